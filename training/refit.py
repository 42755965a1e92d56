"""Finish the output bias exactly: the weighted log loss's own optimality condition for it.

At the optimum of the weighted log loss, the derivative in the output bias is zero:
sum(w * sigmoid(z)) = sum(w * y) over the training rows, i.e. the model is calibrated on the
(weighted) training data. Stochastic steps leave the bias a few percent off that point, noise
which the last batches decide; one pass over the train rows and a 1-D Newton solve put it there.

A warm-started model's refit is shrunk toward the level of its warm start (empirical Bayes):
its rows are often a small fresh snapshot whose click rate says little, and the warm start
carries the evidence of everything it trained on before.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from freshlake.training.batch import Batch
from freshlake.training.metrics import log_calibration_variance
from freshlake.training.model import CTRModel


def solve_bias_shift(
    logits: np.ndarray,
    label: np.ndarray,
    weight: np.ndarray,
    iterations: int = 50,
    target: float | None = None,
) -> float:
    """The `d` with sum(w * sigmoid(z + d)) = sum(w * y) (or = `target`): Newton's method on
    the weighted log loss in `d` (convex, so it converges from 0)."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(label, np.float64)
    w = np.asarray(weight, np.float64)
    target = float((w * y).sum()) if target is None else target
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


def shift_variance(
    logits: np.ndarray, label: np.ndarray, weight: np.ndarray, shift: float
) -> float:
    """The sampling variance of a solved shift: at the solution, shift ~ log(clicks / predicted)
    to first order, so its variance is that of log calibration over these rows."""
    p = _sigmoid(np.asarray(logits, np.float64) + shift)
    w, y = np.asarray(weight, np.float64), np.asarray(label, np.float64)
    return log_calibration_variance(y, p, w)


def shrink_shift(shift: float, variance: float, prior_sd: float) -> tuple[float, float]:
    """Empirical-Bayes shrinkage of a solved shift toward 0 (the warm start's own bias): with a
    prior shift ~ N(0, prior_sd^2) and the estimate ~ N(shift, variance), the posterior mean is
    shift x prior_sd^2 / (prior_sd^2 + variance). Returns (shrunk shift, factor)."""
    if not np.isfinite(variance):
        return 0.0, 0.0
    factor = prior_sd**2 / (prior_sd**2 + variance)
    return shift * factor, factor


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


@torch.no_grad()
def refit_output_bias(
    model: CTRModel,
    batches: Iterable[Batch],
    *,
    weighted: bool = True,
    device: torch.device | str = "cpu",
    prior_sd: float | None = None,
    prior_model: CTRModel | None = None,
) -> dict[str, float]:
    """Shift the model's output bias so it is calibrated on `batches` (the train rows, with the
    loss's weights when `weighted`); returns the shift and the calibration before it.

    `prior_sd` (a warm start's refit): the model is not calibrated to the rows' clicks but to
    the posterior level of empirical Bayes, with the prior `prior_model` (the warm start) and its
    own calibration on the rows as the evidence: the shift that would calibrate the warm start
    there, shrunk by how well the rows determine it (`shrink_shift`), sets the predicted clicks
    the model is brought to. A few dozen fresh clicks then leave the model at the warm start's
    level on these rows, however far its steps moved the mean, and thousands calibrate it.
    """
    model.eval()
    if prior_model is not None:
        prior_model.eval()
    logits, prior_logits, labels, weights = [], [], [], []
    for batch in batches:
        on_device = batch.to(device)
        logits.append(model(on_device).cpu().numpy())
        if prior_model is not None:
            prior_logits.append(prior_model(on_device).cpu().numpy())
        labels.append(batch.label.numpy())
        weights.append(batch.weight.numpy() if weighted else np.ones(len(batch)))
    if not logits:
        return {"shift": 0.0, "rows": 0}
    z, y, w = (np.concatenate(p).astype(np.float64) for p in (logits, labels, weights))
    clicks = float((w * y).sum())
    before = float((w * _sigmoid(z)).sum() / max(clicks, 1e-12))
    out = {"train_calibration_before": before, "rows": len(z), "clicks": float(y.sum())}
    if prior_sd is None:
        shift = solve_bias_shift(z, y, w)
    else:
        z0 = np.concatenate(prior_logits).astype(np.float64) if prior_logits else z
        solved = solve_bias_shift(z0, y, w)
        variance = shift_variance(z0, y, w, solved)
        prior_shift, factor = shrink_shift(solved, variance, prior_sd)
        target = float((w * _sigmoid(z0 + prior_shift)).sum())
        shift = solve_bias_shift(z, y, w, target=target)
        out.update(
            {
                "prior_calibration": float((w * _sigmoid(z0)).sum() / max(clicks, 1e-12)),
                "prior_solved_shift": solved,
                "shift_sd": float(np.sqrt(variance)),
                "prior_sd": prior_sd,
                "shrinkage_factor": factor,
                "target_calibration": target / max(clicks, 1e-12),
            }
        )
    model.shift_output_bias(shift)
    return {"shift": shift, **out}
