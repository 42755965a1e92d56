"""The batch path: per-item statistics and the training-set builder (DESIGN.md sections 1 and 3)."""
