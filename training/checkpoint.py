"""Training checkpoints: model, optimizer and loader position, written atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainState:
    """Where training stands: the next epoch to finish and each loader shard's next row."""

    epoch: int = 0
    step: int = 0
    n_shards: int = 0
    # shard -> (block, row) inside `epoch`; shards absent here start the epoch from the top.
    positions: dict[int, tuple[int, int]] = field(default_factory=dict)
    rows_read: int = 0  # rows consumed over the whole run (re-reads after a crash included)
    epoch_rows: int = 0  # rows consumed in `epoch` so far (by the checkpointed position)
    rows_per_epoch: list[int] = field(default_factory=list)  # of the finished epochs


def save_checkpoint(out_dir: str | Path, model_state, optimizer_state, state: TrainState) -> Path:
    """Write `checkpoint.pt` in `out_dir` atomically (a crash leaves the previous one intact)."""
    path = Path(out_dir) / CHECKPOINT_FILE
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"model": model_state, "optimizer": optimizer_state, "state": state.__dict__}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(out_dir: str | Path) -> dict[str, Any] | None:
    """The last checkpoint in `out_dir` as {model, optimizer, state: TrainState}, or None."""
    path = Path(out_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=False)
    raw = saved["state"]
    raw["positions"] = {int(k): tuple(v) for k, v in raw["positions"].items()}
    saved["state"] = TrainState(**raw)
    return saved
