"""Delayed feedback on fresh_examples: a constructed stream whose last window holds only the
clicks that have arrived, trained on with each `training.delayed_feedback` mode."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from freshlake.config import load_config
from freshlake.training.batch import FeatureLayout
from freshlake.training.dataset import DeltaExamples
from freshlake.training.delayed_feedback import (
    TIME_COLUMNS,
    FeedbackRows,
    fit_delayed_feedback,
)
from freshlake.training.launch import make_job
from freshlake.training.prior import weighted_click_rate
from freshlake.training.scoring import evaluate_saved_model
from freshlake.training.snapshot import open_snapshot
from freshlake.training.synthetic import (
    SYNTHETIC_SPEC,
    delayed_feedback_stream,
    write_synthetic_table,
)
from freshlake.training.trainer import train
from freshlake.training.units import plan_units, read_unit

LAYOUT = FeatureLayout.from_spec(SYNTHETIC_SPEC)


def rate(table) -> float:
    weight = table.column("weight").to_numpy()
    return float((weight * table.column("label").to_numpy()).sum() / weight.sum())


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    """examples (complete: days 1, 2, 4) and fresh_examples (day 3 as the joiner wrote it)."""
    root = tmp_path_factory.mktemp("feedback") / "lake"
    examples, fresh, now = delayed_feedback_stream(160_000, seed=5)
    write_synthetic_table(str(root / "examples"), examples)
    write_synthetic_table(str(root / "fresh_examples"), fresh)
    train_rows = examples.filter(pc.equal(examples.column("split"), "train"))
    return root, rate(train_rows), now


def fitted_rate(root, mode: str) -> float:
    units = plan_units(open_snapshot(str(root / "fresh_examples"), None))
    feedback = fit_delayed_feedback(
        mode, units, LAYOUT, "train", window_seconds=3600, watermark_delay_seconds=120
    )
    if mode != "none":
        assert feedback.stats["matured_rows"] > 0 and feedback.stats["unmatured_positives"] > 0
    value, _ = weighted_click_rate(
        units,
        LAYOUT,
        "train",
        prepare=lambda table: feedback.apply(table, LAYOUT),
        prepare_columns=TIME_COLUMNS,
    )
    return value


def test_corrections_bring_the_fresh_rows_back_to_the_true_click_rate(stream):
    root, true_rate, _ = stream
    assert fitted_rate(root, "none") > 1.3 * true_rate  # the missing negatives
    for mode in ("matured_only", "importance"):
        assert fitted_rate(root, mode) == pytest.approx(true_rate, rel=0.10), mode


def test_the_loader_delivers_the_kept_rows_with_their_weights(stream):
    root, true_rate, _ = stream
    units = plan_units(open_snapshot(str(root / "fresh_examples"), None))
    for mode in ("matured_only", "importance"):
        feedback = fit_delayed_feedback(
            mode, units, LAYOUT, "train", window_seconds=3600, watermark_delay_seconds=120
        )
        rows = DeltaExamples(
            units,
            LAYOUT,
            transform=FeedbackRows(feedback, LAYOUT),
            batch_size=1000,
            filters={"split": "train"},
        )
        batches = list(rows.batches(num_workers=2))
        label = np.concatenate([b.label.numpy() for b in batches])
        weight = np.concatenate([b.weight.numpy() for b in batches])
        kept = feedback.stats["matured_rows"] + feedback.stats["unmatured_positives"]
        assert len(label) == (feedback.stats["matured_rows"] if mode == "matured_only" else kept)
        assert (weight * label).sum() / weight.sum() == pytest.approx(true_rate, rel=0.10)


@pytest.mark.parametrize("mode", ["matured_only", "importance"])
def test_the_newest_matured_rows_are_held_out_for_the_bias_refit(stream, mode):
    """The newest quarter of the matured span is not trained on; the recalibration rows are
    exactly those rows, unweighted by the correction, and the trained rows keep the true rate."""
    root, true_rate, _ = stream
    units = plan_units(open_snapshot(str(root / "fresh_examples"), None))
    options = {"window_seconds": 3600, "watermark_delay_seconds": 120}
    plain = fit_delayed_feedback(mode, units, LAYOUT, "train", **options)
    held = fit_delayed_feedback(mode, units, LAYOUT, "train", recalibration_share=0.25, **options)
    table = pa.concat_tables(
        read_unit(u, list(dict.fromkeys([*LAYOUT.columns(), *TIME_COLUMNS]))) for u in units
    )
    trained = held.apply(table, LAYOUT)
    recalibration = held.recalibration_rows().apply(table, LAYOUT)
    stats = held.stats
    assert stats["recalibration_rows"] == recalibration.num_rows > 0
    assert stats["recalibration_clicks"] == int(pc.sum(recalibration.column("label")).as_py())
    assert trained.num_rows + recalibration.num_rows == plain.apply(table, LAYOUT).num_rows
    served = recalibration.column("served_at").to_numpy().astype("datetime64[us]").astype(int)
    assert (served > held.holdout_after_us).all() and (served <= held.cutoff_us).all()
    # Matured rows with their own weights (1 / sample_prob), not the correction's.
    assert set(np.unique(recalibration.column("weight").to_numpy())) <= {1.0, 10.0}
    assert rate(trained) == pytest.approx(true_rate, rel=0.10)


def test_unknown_mode_and_missing_time_columns_are_clear_errors(stream):
    root, _, _ = stream
    units = plan_units(open_snapshot(str(root / "fresh_examples"), None))
    with pytest.raises(ValueError, match="unknown delayed_feedback mode"):
        fit_delayed_feedback(
            "fnw", units, LAYOUT, "train", window_seconds=1, watermark_delay_seconds=0
        )
    with pytest.raises(ValueError, match="served_at"):
        fit_delayed_feedback(
            "importance",
            units,
            LAYOUT,
            "train",
            window_seconds=1,
            watermark_delay_seconds=0,
            columns=["label", "weight"],
        )


def test_importance_weights_count_each_fresh_click_by_its_chance_of_having_arrived():
    from freshlake.training.delayed_feedback import DelayedFeedback

    feedback = DelayedFeedback(
        "importance",
        now_us=10_000_000,
        cutoff_us=0,
        delays_s=(1.0, 2.0, 4.0, 8.0),
        negative_factor=1.5,
    )
    served = np.array([-5_000_000, 9_000_000, 6_000_000, -1, 5_000_000])
    label = np.array([0, 1, 1, 1, 0])
    factors = feedback.row_factors(served, served, label)
    # matured negative: 1.5; clicks 1 s and 4 s old: F = 1/4, 3/4; matured click: 1;
    # unmatured negative: dropped (only some of them are written yet)
    assert factors.tolist() == pytest.approx([1.5, 4.0, 4 / 3, 1.0, 0.0])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "low", "high"),
    # The model generalises with a few percent of over-prediction on this truth (a model
    # trained on the complete batch days: 1.07), so the corrected bands sit a little above 1.
    [("none", 1.35, 3.0), ("matured_only", 0.9, 1.2), ("importance", 0.9, 1.2)],
)
def test_model_trained_on_the_fresh_rows_is_calibrated_with_a_correction(
    stream, tmp_path, monkeypatch, mode, low, high
):
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    root, _, _ = stream
    config = load_config(None, {"lake.root": str(root)})
    config = config.model_copy(
        update={
            "features": config.features.model_copy(update={"spec": SYNTHETIC_SPEC}),
            "training": config.training.model_copy(
                update={"table": "fresh_examples", "num_workers": 0, "delayed_feedback": mode}
            ),
        }
    )
    card = train(make_job(config, tmp_path / mode))
    start = card["training"]["start"]
    assert start["delayed_feedback"]["mode"] == mode
    if mode != "none":  # the bias refit on the newest matured rows, which it did not train on
        assert start["refit"]["on"] == "recalibration rows"
        assert start["refit"]["rows"] == start["delayed_feedback"]["recalibration_rows"] > 0
    metrics = evaluate_saved_model(config, tmp_path / mode, table="examples")["metrics"]
    assert low < metrics["model"]["calibration"] < high, metrics["model"]
