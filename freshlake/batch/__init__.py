"""The batch path: per-item statistics and the training-set builder (docs/design.md sections 1 and 3)."""
