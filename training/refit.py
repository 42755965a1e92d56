"""Finish the output bias exactly: the weighted log loss's own optimality condition for it.

At the optimum of the weighted log loss, the derivative in the output bias is zero:
sum(w * sigmoid(z)) = sum(w * y) over the training rows, i.e. the model is calibrated on the
(weighted) training data. Stochastic steps leave the bias a few percent off that point, noise
which the last batches decide; one pass over the train rows and a 1-D Newton solve put it there.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from freshlake.training.batch import Batch
from freshlake.training.model import CTRModel


def solve_bias_shift(
    logits: np.ndarray, label: np.ndarray, weight: np.ndarray, iterations: int = 50
) -> float:
    """The `d` with sum(w * sigmoid(z + d)) = sum(w * y): Newton's method on the weighted log
    loss in `d` (convex, so it converges from 0)."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(label, np.float64)
    w = np.asarray(weight, np.float64)
    target = float((w * y).sum())
    if not len(z) or target <= 0 or target >= w.sum():
        return 0.0
    shift = 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(z + shift)))
        gradient = float((w * p).sum()) - target
        curvature = float((w * p * (1 - p)).sum())
        if curvature <= 0:
            break
        step = gradient / curvature
        shift -= float(np.clip(step, -2.0, 2.0))
        if abs(step) < 1e-10:
            break
    return shift


# Below this many clicks the train rows' rate is too noisy to set the bias by (relative
# standard error ~ 1/sqrt(clicks): 5% at 400); a small continual-training snapshot keeps the
# bias its warm start had.
MIN_CLICKS = 400


@torch.no_grad()
def refit_output_bias(
    model: CTRModel,
    batches: Iterable[Batch],
    *,
    weighted: bool = True,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Shift the model's output bias so it is calibrated on `batches` (the train rows, with the
    loss's weights when `weighted`); returns the shift and the calibration before it."""
    model.eval()
    logits, labels, weights = [], [], []
    for batch in batches:
        logits.append(model(batch.to(device)).cpu().numpy())
        labels.append(batch.label.numpy())
        weights.append(batch.weight.numpy() if weighted else np.ones(len(batch)))
    if not logits:
        return {"shift": 0.0, "rows": 0}
    z, y, w = (np.concatenate(p).astype(np.float64) for p in (logits, labels, weights))
    before = float((w / (1 + np.exp(-z))).sum() / max((w * y).sum(), 1e-12))
    if y.sum() < MIN_CLICKS:  # the rate of a few clicks is noisier than the bias it would set
        return {"shift": 0.0, "train_calibration_before": before, "rows": len(z), "skipped": True}
    shift = solve_bias_shift(z, y, w)
    model.shift_output_bias(shift)
    return {"shift": shift, "train_calibration_before": before, "rows": len(z)}
