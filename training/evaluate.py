"""Predictions and metrics on a snapshot's eval split, and the popularity baseline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc
import torch

from freshlake import contract
from freshlake.training.batch import FeatureLayout
from freshlake.training.dataset import DeltaExamples
from freshlake.training.metrics import correct_for_negative_sampling, evaluate_predictions
from freshlake.training.model import CTRModel
from freshlake.training.units import WorkUnit, read_unit


class NoEvalRowsError(ValueError):
    """The snapshot has no rows in the eval split."""


@dataclass
class Predictions:
    """Predictions on rows in a fixed order (the unshuffled file / row-group order)."""

    pred: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    extras: dict[str, np.ndarray]


def predict_split(
    model: CTRModel,
    units: Sequence[WorkUnit],
    layout: FeatureLayout,
    split: str,
    *,
    batch_size: int = 8192,
    extras: Sequence[str] = (),
    device: torch.device | str = "cpu",
) -> Predictions:
    """The model's predictions on every row of `split`, in the same order on every call."""
    dataset = DeltaExamples(
        units,
        layout,
        batch_size=batch_size,
        shuffle=False,
        filters={contract.SPLIT: split},
        extras=extras,
    )
    model.eval()
    preds, labels, weights = [], [], []
    kept: dict[str, list[np.ndarray]] = {c: [] for c in extras}
    for batch in dataset.iter_shard(0, 1):
        preds.append(model.predict(batch.to(device)).cpu().numpy())
        labels.append(batch.label.numpy())
        weights.append(batch.weight.numpy())
        for column in extras:
            kept[column].append(batch.extras[column].numpy())

    def join(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0)

    return Predictions(
        join(preds), join(labels), join(weights), {c: join(v) for c, v in kept.items()}
    )


def popularity_baseline(
    units: Sequence[WorkUnit],
    layout: FeatureLayout,
    column: str,
    train_split: str,
    eval_values: np.ndarray,
    smoothing: float = 10.0,
) -> np.ndarray:
    """Predict each eval row with its `column` value's weighted training CTR.

    CTRs are smoothed toward the overall training CTR with `smoothing` pseudo-impressions;
    unseen values get the overall CTR.
    """
    wanted = [column, layout.label, contract.SPLIT] + ([layout.weight] if layout.weight else [])
    values, labels, weights = [], [], []
    for unit in units:
        table = read_unit(unit, list(dict.fromkeys(wanted)))
        table = table.filter(pc.equal(table.column(contract.SPLIT), train_split))
        values.append(table.column(column).to_numpy(zero_copy_only=False))
        labels.append(pc.fill_null(table.column(layout.label), 0).to_numpy().astype(np.float64))
        weights.append(
            pc.fill_null(table.column(layout.weight), 1.0).to_numpy().astype(np.float64)
            if layout.weight
            else np.ones(table.num_rows)
        )
    value, label, weight = (np.concatenate(p) for p in (values, labels, weights))
    overall = (weight * label).sum() / max(weight.sum(), 1e-12)
    keys, inverse = np.unique(value, return_inverse=True)
    clicks = np.bincount(inverse, weights=weight * label, minlength=len(keys))
    impressions = np.bincount(inverse, weights=weight, minlength=len(keys))
    ctr = (clicks + smoothing * overall) / (impressions + smoothing)
    where = np.searchsorted(keys, eval_values)
    where = np.clip(where, 0, max(len(keys) - 1, 0))
    known = len(keys) > 0 and keys[where] == eval_values
    return np.where(known, ctr[where] if len(keys) else overall, overall)


def evaluate_model(
    model: CTRModel,
    units: Sequence[WorkUnit],
    layout: FeatureLayout,
    *,
    eval_split: str = "eval",
    train_split: str = "train",
    baseline_column: str | None = None,
    negative_rate: float | None = None,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, dict[str, float]], Predictions]:
    """Weighted metrics of the model on the eval split (and of the baseline / correction)."""
    extras = (baseline_column,) if baseline_column else ()
    predictions = predict_split(model, units, layout, eval_split, extras=extras, device=device)
    if len(predictions.label) == 0:
        raise NoEvalRowsError(f"the snapshot has no rows with split={eval_split!r} to evaluate on")
    result = {
        "model": evaluate_predictions(predictions.label, predictions.pred, predictions.weight)
    }
    if negative_rate is not None:
        corrected = correct_for_negative_sampling(predictions.pred, negative_rate)
        result["model_corrected"] = evaluate_predictions(
            predictions.label, corrected, predictions.weight
        )
        result["model_corrected"]["negative_rate"] = negative_rate
    if baseline_column:
        baseline = popularity_baseline(
            units,
            layout,
            baseline_column,
            train_split,
            predictions.extras[baseline_column].astype(np.int64),
        )
        result["popularity_baseline"] = evaluate_predictions(
            predictions.label, baseline, predictions.weight
        )
        result["popularity_baseline"]["column"] = baseline_column
    return result, predictions
