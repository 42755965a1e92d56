"""The model artifact: weights, a model card (JSON) and a calibration plot, in one folder."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from freshlake.config import FeatureSpec
from freshlake.training.model import CTRModel, ModelShape

MODEL_FILE = "model.pt"
CARD_FILE = "model_card.json"
PLOT_FILE = "calibration.png"


def feature_spec_hash(spec: Sequence[FeatureSpec]) -> str:
    """A stable short hash of the feature spec: a model only fits tables built with the same one."""
    blob = json.dumps([f.model_dump(mode="json") for f in spec], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_model(out_dir: str | Path, model: CTRModel) -> Path:
    """Weights and the shape needed to rebuild them."""
    path = Path(out_dir) / MODEL_FILE
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"shape": model.shape.to_dict(), "state": model.state_dict()}, tmp)
    os.replace(tmp, path)
    return path


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> CTRModel:
    """The model saved in `model_dir`, in eval mode."""
    saved = torch.load(Path(model_dir) / MODEL_FILE, map_location=device, weights_only=False)
    model = CTRModel(ModelShape(**saved["shape"]))
    model.load_state_dict(saved["state"])
    return model.to(device).eval()


def write_card(out_dir: str | Path, card: dict[str, Any]) -> Path:
    """Write `model_card.json` (adds `created_at`)."""
    card = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"), **card}
    path = Path(out_dir) / CARD_FILE
    path.write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    return path


def read_card(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / CARD_FILE
    if not path.exists():
        raise FileNotFoundError(f"{model_dir} has no {CARD_FILE}: not a freshlake model folder")
    return json.loads(path.read_text())


def calibration_bins(label, pred, weight, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(mean prediction, observed CTR) per bin of equal weighted mass, both weighted."""
    label, pred, weight = (np.asarray(a, dtype=np.float64) for a in (label, pred, weight))
    order = np.argsort(pred)
    cum = np.cumsum(weight[order])
    edges = np.searchsorted(cum, np.linspace(0, cum[-1], bins + 1)[1:-1])
    predicted, observed = [], []
    for idx in np.split(order, edges):
        w = weight[idx]
        if len(idx) and w.sum() > 0:
            predicted.append((w * pred[idx]).sum() / w.sum())
            observed.append((w * label[idx]).sum() / w.sum())
    return np.array(predicted), np.array(observed)


def plot_calibration(out_dir: str | Path, label, pred, weight, title: str) -> Path:
    """Reliability diagram: observed CTR against mean prediction per bin, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    predicted, observed = calibration_bins(label, pred, weight)
    fig, ax = plt.subplots(figsize=(5, 5))
    low = max(min(predicted.min(initial=1), observed[observed > 0].min(initial=1)) / 2, 1e-5)
    ax.plot([low, 1], [low, 1], color="grey", linestyle="--", label="perfect")
    ax.plot(predicted, np.maximum(observed, low), marker="o", label="model")
    ax.set(xscale="log", yscale="log", xlabel="mean prediction", ylabel="observed CTR (weighted)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    path = Path(out_dir) / PLOT_FILE
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
