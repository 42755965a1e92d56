"""Weighted evaluation metrics for CTR models, numpy only.

With bias-correction weights (`weight = 1 / sample_prob`), weighted metrics on a downsampled
eval split estimate the metrics on the full, unsampled traffic (Horvitz-Thompson).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7


def _arrays(*arrays) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.float64) for a in arrays]


def _weights(label, weight) -> np.ndarray:
    return np.ones_like(label) if weight is None else weight


def weighted_auc(label, pred, weight=None) -> float:
    """P(a random positive scores above a random negative), pairs weighted, ties count half."""
    label, pred = _arrays(label, pred)
    weight = _weights(label, None if weight is None else _arrays(weight)[0])
    order = np.argsort(pred, kind="mergesort")
    label, pred, weight = label[order], pred[order], weight[order]
    pos = weight * label
    neg = weight * (1 - label)
    # Group equal scores: positives beat all negatives with lower scores, tie with equal ones.
    _, starts = np.unique(pred, return_index=True)
    pos_group = np.add.reduceat(pos, starts)
    neg_group = np.add.reduceat(neg, starts)
    neg_below = np.cumsum(neg_group) - neg_group
    total = pos.sum() * neg.sum()
    if total == 0:
        return float("nan")
    return float((pos_group * (neg_below + 0.5 * neg_group)).sum() / total)


def weighted_log_loss(label, pred, weight=None) -> float:
    """Weighted mean binary log loss."""
    label, pred = _arrays(label, pred)
    weight = _weights(label, None if weight is None else _arrays(weight)[0])
    p = np.clip(pred, EPS, 1 - EPS)
    losses = -(label * np.log(p) + (1 - label) * np.log(1 - p))
    return float((weight * losses).sum() / weight.sum())


def normalized_entropy(label, pred, weight=None) -> float:
    """Log loss divided by the entropy of the (weighted) average CTR; below 1 beats a constant."""
    label = _arrays(label)[0]
    w = _weights(label, None if weight is None else _arrays(weight)[0])
    ctr = float(np.clip((w * label).sum() / w.sum(), EPS, 1 - EPS))
    entropy = -(ctr * np.log(ctr) + (1 - ctr) * np.log(1 - ctr))
    return weighted_log_loss(label, pred, weight) / entropy


def calibration(label, pred, weight=None) -> float:
    """Sum of predictions over sum of labels, both weighted: 1.0 is calibrated."""
    label, pred = _arrays(label, pred)
    weight = _weights(label, None if weight is None else _arrays(weight)[0])
    clicks = (weight * label).sum()
    return float((weight * pred).sum() / clicks) if clicks else float("nan")


# Two-sided 95% normal quantile: the calibration interval's default width.
Z_95 = 1.959963984540054


def calibration_interval(label, pred, weight=None, z: float = Z_95) -> tuple[float, float]:
    """A confidence interval for `calibration` from the rows' sampling error (delta method).

    Calibration is a ratio of weighted sums over rows, R = sum(w p) / sum(w y); treating the
    rows as a sample of the traffic, Var(R) ~ sum((w p - R w y)^2) / sum(w y)^2 (the ratio
    estimator's linearisation, what a bootstrap over rows estimates too). The interval is taken
    on log R, so it stays positive and is as wide above as below in ratio terms. A few dozen
    clicks give +-25%; the band 0.9-1.1 needs about 400 clicks before noise alone stays inside.
    """
    label, pred = _arrays(label, pred)
    w = _weights(label, None if weight is None else _arrays(weight)[0])
    clicks = float((w * label).sum())
    predicted = float((w * pred).sum())
    if clicks <= 0 or predicted <= 0:
        return float("nan"), float("nan")
    ratio = predicted / clicks
    n = len(label)
    variance = log_calibration_variance(label, pred, w) * n / max(n - 1, 1)
    spread = z * np.sqrt(variance)
    return ratio * float(np.exp(-spread)), ratio * float(np.exp(spread))


def log_calibration_variance(label: np.ndarray, pred: np.ndarray, weight: np.ndarray) -> float:
    """The sampling variance of log calibration over these rows (delta method on the ratio
    R = sum(w p) / sum(w y)): sum((w p - R w y)^2) / sum(w y)^2 / R^2; infinite without clicks."""
    clicks = float((weight * label).sum())
    if clicks <= 0:
        return float("inf")
    ratio = float((weight * pred).sum()) / clicks
    return float(((weight * pred - ratio * weight * label) ** 2).sum()) / clicks**2 / ratio**2


def evaluate_predictions(label, pred, weight=None) -> dict[str, float]:
    """AUC, log loss, normalized entropy, calibration (with its 95% interval) and counts."""
    label = _arrays(label)[0]
    w = _weights(label, None if weight is None else _arrays(weight)[0])
    low, high = calibration_interval(label, pred, w)
    return {
        "auc": weighted_auc(label, pred, w),
        "log_loss": weighted_log_loss(label, pred, w),
        "normalized_entropy": normalized_entropy(label, pred, w),
        "calibration": calibration(label, pred, w),
        "calibration_ci_low": low,
        "calibration_ci_high": high,
        "clicks": float(label.sum()),
        "rows": len(label),
        "weighted_rows": float(w.sum()),
        "weighted_ctr": float((w * label).sum() / w.sum()) if len(label) else float("nan"),
    }


def correct_for_negative_sampling(pred, negative_rate: float) -> np.ndarray:
    """He et al. (2014): q = p / (p + (1 - p) / r) for a model trained, unweighted, on data whose
    negatives were kept with probability r (positives all kept)."""
    if not 0 < negative_rate <= 1:
        raise ValueError("negative_rate must be in (0, 1]")
    p = _arrays(pred)[0]
    return p / (p + (1 - p) / negative_rate)


def prediction_difference(pred_a, pred_b) -> dict[str, float]:
    """Prediction difference between two models on the same rows.

    `pd_relative` is the relative PD of Shamir et al. (Google, 2020), the mean over rows of
    |p_a - p_b| divided by the rows' mean prediction (p_a + p_b) / 2; `pd_absolute` is the mean
    |p_a - p_b|; `pd_normalized` is mean |p_a - p_b| over the mean prediction of both models.
    """
    a, b = _arrays(pred_a, pred_b)
    if a.shape != b.shape:
        raise ValueError("prediction difference needs predictions on the same rows")
    diff = np.abs(a - b)
    mean = (a + b) / 2
    return {
        "pd_relative": float(np.mean(diff / np.maximum(mean, EPS))),
        "pd_absolute": float(diff.mean()),
        "pd_normalized": float(diff.mean() / max(mean.mean(), EPS)),
        "rows": len(a),
    }
