"""Small trained models and examples tables for the release tests (no Spark, no torchrun)."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from freshlake import contract
from freshlake.config import Config, load_config
from freshlake.training.artifact import CARD_FILE, load_model, save_model
from freshlake.training.launch import make_job
from freshlake.training.synthetic import SYNTHETIC_SPEC, synthetic_examples, write_synthetic_table
from freshlake.training.trainer import train

REPO = Path(__file__).resolve().parent.parent
REGIONS = np.array(["eu", "us", "apac"])
SURFACES = np.array(["home", "search"])


def release_config(root: Path, **release) -> Config:
    """The embedded default on a lake at `root`: synthetic features, a quick trainer."""
    config = load_config(REPO / "conf" / "local.yaml", {"lake.root": str(root)})
    training = {"epochs": 1, "batch_size": 256, "num_workers": 0, "checkpoint_every": 1000}
    return config.model_copy(
        update={
            "features": config.features.model_copy(update={"spec": SYNTHETIC_SPEC}),
            "training": config.training.model_copy(update=training),
            "release": config.release.model_copy(update=release),
        }
    )


def with_context(table: pa.Table, seed: int) -> pa.Table:
    """Synthetic examples plus the columns slices and the canary read: region, surface,
    stratum (rare items: item ids above 300) and served_at (spread over each row's day)."""
    rng = np.random.default_rng(seed)
    n = table.num_rows
    label = table.column(contract.LABEL).to_numpy()
    rare = table.column(contract.feature_column("item_id")).to_numpy() % 1009 > 300
    stratum = np.where(label == 1, "positive", "negative").astype(object)
    stratum = np.where(rare, stratum + "_rare", stratum)
    days = table.column(contract.DT).to_pylist()
    seconds = rng.integers(0, 86_400, n)
    served = [
        datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(seconds=int(s))
        for d, s in zip(days, seconds, strict=True)
    ]
    table = (
        table.append_column("region", pa.array(REGIONS[rng.integers(0, 3, n)]))
        .append_column("surface", pa.array(SURFACES[rng.integers(0, 2, n)]))
        .append_column(contract.STRATUM, pa.array(stratum.tolist(), pa.string()))
    )
    if "served_at" in table.column_names:  # newer synthetic tables carry their own
        return table
    return table.append_column("served_at", pa.array(served, pa.timestamp("us", tz="UTC")))


def write_examples(root: Path, table: str, impressions: int, seed: int, **kw) -> pa.Table:
    data = with_context(synthetic_examples(impressions, seed=seed, **kw), seed)
    write_synthetic_table(str(root / table), data)
    return data


def train_model(config: Config, out: Path) -> Path:
    """Train in this process (no torchrun) on the config's table."""
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(name, None)
    train(make_job(config, out))
    return out


def shifted_copy(src: Path, dst: Path, logit_shift: float) -> Path:
    """A copy of a model folder whose output logit is moved by `logit_shift` (mis-calibrated:
    same ranking, wrong level)."""
    dst.mkdir(parents=True, exist_ok=True)
    model = load_model(src)
    with torch.no_grad():
        model.mlp[-1].bias += logit_shift
    save_model(dst, model)
    shutil.copy(src / CARD_FILE, dst / CARD_FILE)
    return dst
