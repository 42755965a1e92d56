"""The training function every process runs (under torchrun or TorchDistributor).

All ranks step in lockstep: each step, one all-reduce tells every rank whether any rank still
has data and how many rows the step has. A rank whose shards are exhausted steps on an empty
batch, so no rows are dropped to even out shards, and the gradient is the sum of weighted losses
over all rows of the step divided by their number. Rank 0 writes checkpoints (model, optimizer,
every shard's position), the model and its card.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from freshlake import contract
from freshlake.config import Config
from freshlake.training.artifact import (
    feature_spec_hash,
    load_model,
    plot_calibration,
    save_model,
    write_card,
)
from freshlake.training.audit import RowAudit
from freshlake.training.batch import Batch, FeatureLayout, empty_batch
from freshlake.training.checkpoint import TrainState, load_checkpoint, save_checkpoint
from freshlake.training.dataset import DeltaExamples, shuffle_mode
from freshlake.training.delayed_feedback import (
    TIME_COLUMNS,
    DelayedFeedback,
    FeedbackRows,
    fit_delayed_feedback,
)
from freshlake.training.distributed import (
    DistContext,
    all_gather,
    all_sum,
    barrier,
    init_distributed,
)
from freshlake.training.distributed import shutdown as shutdown_distributed
from freshlake.training.evaluate import NoEvalRowsError, evaluate_model
from freshlake.training.job import TrainJob, job_snapshot
from freshlake.training.model import CTRModel, ModelShape, make_optimizer, weighted_log_loss
from freshlake.training.prior import log_odds, weighted_click_rate
from freshlake.training.refit import refit_output_bias
from freshlake.training.snapshot import Snapshot
from freshlake.training.units import WorkUnit, plan_units

log = logging.getLogger(__name__)


def _continue_optimizer(
    optimizer: torch.optim.Optimizer, warm_start: str, learning_rate: float, log_it: bool
) -> None:
    """Continue the warm start's optimizer state (Adagrad's squared-gradient sums) when its
    folder has one of the same optimizer, at this run's learning rate.

    A new Adagrad's first step moves every weight by the whole learning rate whatever its
    gradient's size, so a warm-started model trained on a few hundred fresh rows with fresh
    accumulators drifts far from calibration in one step; with the accumulators it takes the
    small step that its history of gradients calls for.
    """
    previous = load_checkpoint(warm_start)
    if previous is None:
        return
    saved = previous["optimizer"]
    current = optimizer.state_dict()
    if set(saved["param_groups"][0]) != set(current["param_groups"][0]) or len(
        saved["param_groups"][0]["params"]
    ) != len(current["param_groups"][0]["params"]):
        if log_it:
            log.info("warm start %s used another optimizer: its state is not continued", warm_start)
        return
    optimizer.load_state_dict(saved)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate
    if log_it:
        log.info("optimizer state continued from %s", warm_start)


def _build_model(
    config: Config,
    layout: FeatureLayout,
    units: list[WorkUnit],
    warm_start: str | None,
    feedback: DelayedFeedback,
) -> tuple[CTRModel, dict[str, Any]]:
    """The model to train and how it started: a warm start keeps the previous model's output
    bias; a new model starts at the log-odds of the train rows' base rate (weighted by the
    loss's weights), so it is calibrated before its first step."""
    t = config.training
    if warm_start:
        model = load_model(warm_start)
        log.info("warm start from %s", warm_start)
        return model.train(), {"warm_start": warm_start}
    shape = ModelShape.from_layout(
        layout, t.max_embedding_rows, t.embedding_dim, t.hidden, t.activation, t.smelu_beta
    )
    model = CTRModel(shape)
    rate, rows = weighted_click_rate(
        units,
        layout,
        t.train_split,
        weighted=t.weighted_loss,
        prepare=None if feedback.mode == "none" else lambda table: feedback.apply(table, layout),
        prepare_columns=() if feedback.mode == "none" else TIME_COLUMNS,
    )
    start: dict[str, Any] = {"base_rate": rate, "base_rate_rows": rows}
    if rows and math.isfinite(rate):
        start["output_bias"] = log_odds(rate)
        model.init_output_bias(start["output_bias"])
    return model, start


def _progress(ctx: DistContext, total_rows: int, batch_size: int):
    from tqdm import tqdm

    return tqdm(
        total=max(total_rows // max(batch_size * ctx.world_size, 1), 1),
        unit="step",
        disable=not ctx.is_main,
        mininterval=0.5 if sys.stderr.isatty() else 10,
        desc="train",
    )


def train(job: TrainJob) -> dict[str, Any] | None:
    """Train (or resume) the job in this process; rank 0 returns the model card."""
    config = job.parsed_config()
    t = config.training
    ctx = init_distributed(t.backend)
    torch.manual_seed(t.seed)
    try:
        return _train(job, config, ctx)
    finally:
        shutdown_distributed(ctx)


def _train(job: TrainJob, config: Config, ctx: DistContext) -> dict[str, Any] | None:
    t = config.training
    snapshot = job_snapshot(job, config)
    layout = FeatureLayout.from_spec(config.features.spec, snapshot.columns, t.label, t.weight)
    units = plan_units(snapshot)
    feedback = job_feedback(job, config, units, layout, snapshot.columns)
    extras = (job.audit_column,) if job.audit_column else ()
    dataset = train_dataset(config, units, layout, ctx, extras, feedback, job.table)
    n_shards = ctx.world_size * max(t.num_workers, 1)

    model, start = _build_model(config, layout, units, job.warm_start, feedback)
    model = model.to(ctx.device)
    optimizer = make_optimizer(t.optimizer, model.parameters(), t.learning_rate)
    state = TrainState(n_shards=n_shards)
    saved = load_checkpoint(job.out_dir)
    if saved is None and job.warm_start:
        _continue_optimizer(optimizer, job.warm_start, t.learning_rate, ctx.is_main)
    if saved is not None:
        state = saved["state"]
        if state.n_shards != n_shards:
            raise RuntimeError(
                f"checkpoint in {job.out_dir} was written with {state.n_shards} loader shards "
                f"(processes x workers); this run has {n_shards}: resume with the same "
                "--nproc/--nnodes and training.num_workers, or use a new --out"
            )
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if ctx.is_main:
            log.info("resuming at epoch %d step %d", state.epoch, state.step)
    wrapped = model
    if ctx.distributed:
        wrapped = torch.nn.parallel.DistributedDataParallel(model)

    audit = RowAudit(job.out_dir, job.audit_column, ctx.rank, state.step)
    empty = empty_batch(layout).to(ctx.device)
    progress = _progress(ctx, snapshot.num_rows * (t.epochs - state.epoch), t.batch_size)
    started, rows_at_start = time.perf_counter(), state.rows_read
    while state.epoch < t.epochs:
        loader = epoch_batches(config, dataset, snapshot, state)
        rows = _train_epoch(
            ctx, job, config, loader, wrapped, optimizer, state, audit, progress, empty
        )
        state.rows_read += rows
        state.rows_per_epoch.append(state.epoch_rows + rows)
        if ctx.is_main:
            log.info(
                "epoch %d: %d rows, step %d", state.epoch, state.rows_per_epoch[-1], state.step
            )
        audit.flush(state.epoch, state.step)
        state.epoch, state.positions, state.epoch_rows = state.epoch + 1, {}, 0
        _checkpoint(ctx, job, model, optimizer, state, {}, 0, audit)
    progress.close()
    elapsed = time.perf_counter() - started
    speed = {"seconds": round(elapsed, 3), "rows": state.rows_read - rows_at_start}
    barrier(ctx)
    if not ctx.is_main:
        return None
    if t.refit_output_bias:
        start["refit"] = _refit(config, model, units, layout, ctx, feedback, job.warm_start)
    if job.table == contract.FRESH_EXAMPLES:
        start["delayed_feedback"] = {"mode": feedback.mode, **(feedback.stats or {})}
    return _finish(job, config, ctx, model, layout, units, snapshot, state, speed, start)


def _train_epoch(
    ctx: DistContext,
    job: TrainJob,
    config: Config,
    loader,
    wrapped: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    audit: RowAudit,
    progress,
    empty: Batch,
) -> int:
    """Step through the rest of `state.epoch` in lockstep with the other ranks; returns the
    rows all ranks consumed in this session. `empty` stands in once this rank has no data."""
    t = config.training
    model = wrapped.module if ctx.distributed else wrapped
    positions = dict(state.positions)
    local_rows = 0
    for batch in _lockstep(loader):
        rows = len(batch) if batch is not None else 0
        step_batch = batch.to(ctx.device) if batch is not None else empty
        loss_weight = step_batch.weight if t.weighted_loss else torch.ones_like(step_batch.label)
        live, step_rows = all_sum(ctx, [float(rows > 0), float(rows)])
        if live == 0:
            break
        loss = weighted_log_loss(wrapped(step_batch), step_batch.label, loss_weight)
        optimizer.zero_grad(set_to_none=True)
        # The sum of weighted losses over the step's rows on all ranks, over their number: an
        # unbiased estimate of the weighted objective (DDP averages the gradients over ranks).
        (loss * ctx.world_size / step_rows).backward()
        optimizer.step()
        state.step += 1
        local_rows += rows
        if batch is not None:
            audit.add(batch)
            if batch.position is not None:
                _, shard, block, row = batch.position
                positions[shard] = (block, row)
        progress.update(1)
        if ctx.is_main and rows:
            progress.set_postfix(epoch=state.epoch, loss=f"{loss.item() / rows:.4f}")
        if state.step % t.checkpoint_every == 0:
            _checkpoint(ctx, job, model, optimizer, state, positions, local_rows, audit)
    return int(all_sum(ctx, [local_rows])[0])


def job_feedback(
    job: TrainJob,
    config: Config,
    units: list[WorkUnit],
    layout: FeatureLayout,
    columns: list[str] | None = None,
) -> DelayedFeedback:
    """The delayed-feedback handling of the job: `training.delayed_feedback` on the online
    joiner's table (whose newest rows may not have matured), none on any other."""
    t = config.training
    mode = t.delayed_feedback if job.table == contract.FRESH_EXAMPLES else "none"
    if mode != "none" and t.loader != "delta":
        raise ValueError(f"training.delayed_feedback={mode} needs training.loader=delta")
    return fit_delayed_feedback(
        mode,
        units,
        layout,
        t.train_split,
        window_seconds=config.labels.attribution_window_seconds,
        watermark_delay_seconds=config.streaming.watermark_delay_seconds,
        columns=columns,
        recalibration_share=t.recalibration_share if t.refit_output_bias else 0.0,
    )


def _refit(
    config: Config,
    model: CTRModel,
    units: list[WorkUnit],
    layout: FeatureLayout,
    ctx: DistContext,
    feedback: DelayedFeedback,
    warm_start: str | None = None,
) -> dict[str, float]:
    """Rank 0 solves the output-bias shift that calibrates the model on all train rows, or on
    the held-out recalibration rows when the feedback holds some out (a warm start's shift
    shrunk toward its own bias by how many clicks the rows hold)."""
    t = config.training
    held_out = feedback.holdout_after_us is not None
    rows = _examples(
        units,
        layout,
        feedback.recalibration_rows() if held_out else feedback,
        batch_size=8192,
        shuffle=False,
        filters={contract.SPLIT: t.train_split},
    )
    refit = refit_output_bias(
        model,
        rows.iter_shard(0, 1),
        weighted=t.weighted_loss,
        device=ctx.device,
        prior_sd=t.refit_prior_sd if warm_start else None,
        prior_model=load_model(warm_start).to(ctx.device) if warm_start else None,
    )
    refit["on"] = "recalibration rows" if held_out else "train rows"
    log.info("output bias refit on the %s: %s", refit["on"], refit)
    return refit


def _examples(units, layout, feedback: DelayedFeedback, **options) -> DeltaExamples:
    if feedback.mode == "none":
        return DeltaExamples(units, layout, **options)
    return DeltaExamples(units, layout, transform=FeedbackRows(feedback, layout), **options)


def train_dataset(
    config: Config,
    units: list[WorkUnit],
    layout: FeatureLayout,
    ctx: DistContext,
    extras: tuple[str, ...] = (),
    feedback: DelayedFeedback | None = None,
    table: str = contract.EXAMPLES,
) -> DeltaExamples:
    """This rank's share of the train split of `table`, as the default loader reads it (kept
    and re-weighted by `feedback` for rows whose labels may not have matured)."""
    t = config.training
    return _examples(
        units,
        layout,
        feedback or DelayedFeedback("none"),
        batch_size=t.batch_size,
        rank=ctx.rank,
        world_size=ctx.world_size,
        seed=t.seed,
        shuffle=shuffle_mode(t.shuffle, table),
        shuffle_buffer=t.shuffle_buffer,
        filters={contract.SPLIT: t.train_split},
        extras=extras,
        pin_memory=ctx.device.type == "cuda",
    )


def epoch_batches(config: Config, dataset: DeltaExamples, snapshot: Snapshot, state: TrainState):
    """This rank's batches for `state.epoch`, from the configured loader (resumed positions)."""
    t = config.training
    if t.loader == "petastorm":
        from freshlake.training.petastorm_loader import petastorm_batches

        return petastorm_batches(
            [f.uri for f in snapshot.files],
            dataset.layout,
            batch_size=t.batch_size,
            rank=dataset.rank,
            world_size=dataset.world_size,
            seed=t.seed,
            epoch=state.epoch,
            filters=dataset.filters,
            extras=dataset.extras,
        )
    dataset.set_epoch(state.epoch, resume=state.positions)
    return dataset.batches(t.num_workers)


def _lockstep(loader):
    """This rank's batches, then None for as long as the training loop keeps asking."""
    yield from loader
    while True:
        yield None


def _checkpoint(
    ctx: DistContext,
    job: TrainJob,
    model: CTRModel,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    positions: dict[int, tuple[int, int]],
    local_rows: int,
    audit: RowAudit,
) -> None:
    """Gather every rank's shard positions and rows; rank 0 writes the checkpoint."""
    gathered = all_gather(ctx, (positions, local_rows))
    audit.flush(state.epoch, state.step)
    barrier(ctx)  # every audit segment is on disk before the checkpoint that covers it
    if not ctx.is_main:
        return
    merged: dict[int, tuple[int, int]] = {}
    for shard_positions, _ in gathered:
        merged.update(shard_positions)
    snapshot_state = TrainState(
        epoch=state.epoch,
        step=state.step,
        n_shards=state.n_shards,
        positions=merged,
        rows_read=state.rows_read + sum(rows for _, rows in gathered),
        epoch_rows=state.epoch_rows + sum(rows for _, rows in gathered),
        rows_per_epoch=list(state.rows_per_epoch),
    )
    save_checkpoint(job.out_dir, model.state_dict(), optimizer.state_dict(), snapshot_state)


def _finish(
    job: TrainJob,
    config: Config,
    ctx: DistContext,
    model: CTRModel,
    layout: FeatureLayout,
    units,
    snapshot: Snapshot,
    state: TrainState,
    speed: dict[str, float],
    start: dict[str, Any],
) -> dict[str, Any]:
    """Evaluate on the eval split and write the model, its card and calibration plot."""
    from freshlake.runs import code_version

    t = config.training
    baseline = contract.feature_column(t.baseline_feature) if t.baseline_feature else None
    if baseline and baseline not in layout.categorical:
        baseline = None
    model.eval()
    out = Path(job.out_dir)
    save_model(out, model)
    try:
        metrics, predictions = evaluate_model(
            model,
            units,
            layout,
            eval_split=t.eval_split,
            train_split=t.train_split,
            baseline_column=baseline,
            # An unweighted model predicts the sampled rate; report it corrected too.
            negative_rate=None if t.weighted_loss else config.sampling.negative_rate,
            device=ctx.device,
        )
    except NoEvalRowsError as exc:
        log.warning("%s: the model card has no metrics", exc)
        metrics = {"error": str(exc)}
    else:
        plot_calibration(
            out,
            predictions.label,
            predictions.pred,
            predictions.weight,
            f"{job.table} v{job.version} ({t.eval_split}), calibration "
            f"{metrics['model']['calibration']:.3f}",
        )
    card = {
        "model": model.shape.to_dict(),
        "features": [f.model_dump(mode="json") for f in config.features.spec],
        "feature_spec_hash": feature_spec_hash(config.features.spec),
        "layout": {
            "categorical": layout.categorical,
            "numeric": layout.numeric,
            "text": layout.text,
            "label": layout.label,
            "weight": layout.weight,
        },
        "data": {
            "table": job.table,
            "uri": job.table_uri,
            "version": job.version,
            "since_version": job.since_version,
            "start_date": job.start_date,
            "end_date": job.end_date,
            "files": len(snapshot.files),
            "row_groups": len(units),
            "rows_in_files": snapshot.num_rows,
            "rows_read": state.rows_read,
            "rows_per_epoch": state.rows_per_epoch,
        },
        "training": {
            "epochs": t.epochs,
            "steps": state.step,
            # This session's training loop (after a resume: since the restart).
            "loop_seconds": speed["seconds"],
            "samples_per_second": round(speed["rows"] / max(speed["seconds"], 1e-9), 1),
            "world_size": ctx.world_size,
            "backend": ctx.backend or "none",
            "device": str(ctx.device),
            "loader": t.loader,
            "warm_start": job.warm_start,
            "start": start,
        },
        "metrics": {t.eval_split: metrics},
        "config": config.training.model_dump(mode="json"),
        "config_hash": config.config_hash(),
        "code_version": code_version(),
    }
    write_card(out, card)
    return card
