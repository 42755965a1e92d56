"""A saved model's calibration on the eval split of the snapshot it was trained on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from freshlake.config import Config


@dataclass
class Calibration:
    """Mean prediction and observed CTR per bin of equal weighted mass (both weighted)."""

    predicted: np.ndarray
    observed: np.ndarray
    rows: int
    source: str  # table, version and split the predictions were made on
    metric: float | None  # the card's calibration (sum of predictions / sum of labels)


def model_calibration(config: Config, model_dir: str | Path, bins: int = 20) -> Calibration:
    """Predict the eval split of the model's snapshot again and bin it (as the trainer's plot)."""
    from freshlake.training.artifact import calibration_bins, load_model, read_card
    from freshlake.training.evaluate import predict_split
    from freshlake.training.scoring import card_layout
    from freshlake.training.snapshot import added_since, open_snapshot
    from freshlake.training.units import plan_units

    card = read_card(model_dir)
    data = card["data"]
    options = config.lake.storage_options
    snapshot = open_snapshot(data["uri"], data["version"], options).between_dates(
        _day(data.get("start_date")), _day(data.get("end_date"))
    )
    if data.get("since_version") is not None:
        snapshot = added_since(snapshot, data["since_version"], options)
    split = card["config"]["eval_split"]
    predictions = predict_split(
        load_model(model_dir), plan_units(snapshot), card_layout(card), split
    )
    if len(predictions.label) == 0:
        raise ValueError(f"{data['uri']} v{data['version']} has no {split!r} rows to calibrate on")
    predicted, observed = calibration_bins(
        predictions.label, predictions.pred, predictions.weight, bins
    )
    metric = card.get("metrics", {}).get(split, {}).get("model", {}).get("calibration")
    source = f"{data.get('table')} v{data['version']} ({split})"
    return Calibration(predicted, observed, len(predictions.label), source, metric)


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None
