"""Training on a pinned Delta snapshot (docs/design.md section 6).

- `snapshot`: a table version as the files its Delta log references; `units`: row-group work
  units, their per-epoch order and shards; `dataset`: the default loader (`DeltaExamples`),
  `background`: its read-ahead and worker threads; `petastorm_loader`: the optional Petastorm
  loader; `batch`: columns -> tensors. Table and column names come from `freshlake.contract`.
- `model`: hashed-embedding CTR model (ReLU / SmeLU); `metrics`: weighted AUC, log loss, NE,
  calibration, negative-sampling correction, prediction difference.
- `trainer`: the per-process DDP training function; `checkpoint`, `artifact` (model, card,
  calibration plot), `evaluate` / `scoring` (eval split, popularity baseline, compare models).
- Entry points: `launch` (torchrun, TorchDistributor), `worker` (what torchrun runs),
  `train_cli`, `evaluate_cli`, `compare_cli` (`freshlake train | evaluate | compare-models`).
"""
