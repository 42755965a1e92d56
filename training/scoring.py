"""Evaluate saved models and compare two of them on the same rows (`evaluate`, `compare-models`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from freshlake import contract
from freshlake.config import Config
from freshlake.training.artifact import load_model, read_card
from freshlake.training.batch import FeatureLayout
from freshlake.training.evaluate import evaluate_model, predict_split
from freshlake.training.metrics import evaluate_predictions, prediction_difference
from freshlake.training.snapshot import open_snapshot, table_uri
from freshlake.training.units import plan_units


def card_layout(card: dict[str, Any]) -> FeatureLayout:
    """The input layout a saved model was trained with."""
    layout = card["layout"]
    return FeatureLayout(
        categorical=tuple(layout["categorical"]),
        numeric=tuple(layout["numeric"]),
        text=tuple(layout["text"]),
        label=layout["label"],
        weight=layout["weight"],
    )


def _units(config: Config, card: dict[str, Any], table: str | None, version: int | None):
    uri = (
        table_uri(config.lake.root, config.lake.table_name(table)) if table else card["data"]["uri"]
    )
    if version is None and not table:
        version = card["data"]["version"]
    snapshot = open_snapshot(uri, version, config.lake.storage_options)
    return snapshot, plan_units(snapshot)


def evaluate_saved_model(
    config: Config,
    model_dir: str | Path,
    table: str | None = None,
    version: int | None = None,
    negative_rate: float | None = None,
) -> dict[str, Any]:
    """Metrics of the model in `model_dir` on the eval split of a snapshot."""
    card = read_card(model_dir)
    snapshot, units = _units(config, card, table, version)
    t = config.training
    baseline = contract.feature_column(t.baseline_feature) if t.baseline_feature else None
    layout = card_layout(card)
    metrics, _ = evaluate_model(
        load_model(model_dir),
        units,
        layout,
        eval_split=card["config"]["eval_split"],
        train_split=card["config"]["train_split"],
        baseline_column=baseline if baseline in layout.categorical else None,
        negative_rate=negative_rate,
    )
    return {"table": snapshot.uri, "version": snapshot.version, "metrics": metrics}


def compare_saved_models(
    config: Config,
    model_a: str | Path,
    model_b: str | Path,
    table: str | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """Prediction difference of two models on the same eval rows, and each one's metrics."""
    card_a, card_b = read_card(model_a), read_card(model_b)
    if card_a["feature_spec_hash"] != card_b["feature_spec_hash"]:
        raise ValueError("the two models were trained with different feature specs")
    snapshot, units = _units(config, card_a, table, version)
    layout = card_layout(card_a)
    split = card_a["config"]["eval_split"]
    a = predict_split(load_model(model_a), units, layout, split)
    b = predict_split(load_model(model_b), units, layout, split)
    return {
        "table": snapshot.uri,
        "version": snapshot.version,
        "prediction_difference": prediction_difference(a.pred, b.pred),
        "model_a": evaluate_predictions(a.label, a.pred, a.weight),
        "model_b": evaluate_predictions(b.label, b.pred, b.weight),
    }
