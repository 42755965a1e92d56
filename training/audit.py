"""Which rows training consumed: an optional per-rank log of an id column."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from freshlake.training.batch import Batch

AUDIT_DIR = "audit"


class RowAudit:
    """Per-rank record of the `column` values each step consumed, flushed with every
    checkpoint to `OUT/audit/epoch<E>-step<S>-rank<R>.npy` (audits, exactly-once tests)."""

    def __init__(self, out_dir: str, column: str | None, rank: int, resumed_step: int):
        self.column, self.rank = column, rank
        self.folder = Path(out_dir) / AUDIT_DIR
        self.pending: list[np.ndarray] = []
        if column:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Segments a crashed run wrote after its last checkpoint are consumed again now.
            for path in self.folder.glob(f"*-rank{rank}.npy"):
                if int(path.name.split("-step")[1][:8]) > resumed_step:
                    path.unlink()

    def add(self, batch: Batch) -> None:
        if self.column and len(batch):
            self.pending.append(batch.extras[self.column].numpy().astype(np.int64))

    def flush(self, epoch: int, step: int) -> None:
        """Values consumed up to `step`; a replay after a crash rewrites the same file names."""
        if not self.column or not self.pending:
            return
        values = np.concatenate(self.pending)
        np.save(self.folder / f"epoch{epoch}-step{step:08d}-rank{self.rank}.npy", values)
        self.pending = []
