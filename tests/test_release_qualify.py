"""Qualification: thresholds pass and fail, the champion comparison, the worst slice named."""

from __future__ import annotations

import json

import pytest

from freshlake.cli import main
from freshlake.release.qualify import REPORT_FILE, qualify
from tests.release_models import REPO, release_config, shifted_copy, train_model, write_examples


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A trained model and a mis-calibrated copy (same ranking, odds 4.5x too high)."""
    root = tmp_path_factory.mktemp("qualify")
    write_examples(root / "lake", "examples", 40_000, seed=1)
    config = release_config(root / "lake")
    good = train_model(config, root / "good")
    return root, good, shifted_copy(good, root / "bad", 1.5)


def test_a_model_within_the_thresholds_qualifies_and_names_its_worst_slice(models):
    root, good, _ = models
    config = release_config(root / "lake", calibration_band=(0.5, 2.0), max_ne=1.0)
    report = qualify(config, good)

    assert report["qualified"] and report["failed"] == []
    assert report["qualification_set"]["split"] == "eval"
    assert report["qualification_set"]["rows"] == report["metrics"]["rows"] > 1000
    names = {s["slice"] for s in report["slices"]}
    assert {"region=eu", "region=us", "region=apac", "surface=home", "items=rare"} <= names
    judged = [s for s in report["slices"] if s["judged"]]
    worst = max(judged, key=lambda s: s["model"]["normalized_entropy"])
    assert report["worst_slice"] == worst["slice"]
    assert json.loads((good / REPORT_FILE).read_text())["worst_slice"] == worst["slice"]


def test_a_mis_calibrated_challenger_fails_against_the_champion(models):
    root, good, bad = models
    config = release_config(root / "lake", calibration_band=(0.5, 2.0))
    report = qualify(config, bad, champion_dir=good, champion_version="1")

    assert not report["qualified"]
    assert {"calibration", "ne_vs_champion", "prediction_difference"} <= set(report["failed"])
    # A logit shift keeps the ranking: AUC equals the champion's and passes.
    assert "auc_vs_champion" not in report["failed"]
    assert report["metrics"]["auc"] == pytest.approx(report["champion"]["metrics"]["auc"])
    worst = next(s for s in report["slices"] if s["slice"] == report["worst_slice"])
    increases = [
        s["model"]["normalized_entropy"] - s["champion"]["normalized_entropy"]
        for s in report["slices"]
        if s["judged"]
    ]
    top = worst["model"]["normalized_entropy"] - worst["champion"]["normalized_entropy"]
    assert top == pytest.approx(max(increases))


def test_qualify_command_exits_3_when_a_threshold_fails(models, capsys):
    root, good, _ = models
    common = ["--config", str(REPO / "conf" / "local.yaml"), "--set", f"lake.root={root / 'lake'}"]
    # Calibration known to within +-0.1%: the eval rows hold far too few clicks for that.
    tight = ["--set", "release.max_calibration_ci=0.001"]
    assert main(["qualify", str(good), "--no-champion", *common, *tight]) == 3
    assert "FAIL calibration_precision" in capsys.readouterr().out
    loose = ["--set", "release.calibration_band=[0.5, 2.0]"]
    assert main(["qualify", str(good), "--no-champion", *common, *loose]) == 0
    assert "worst slice:" in capsys.readouterr().out


def test_a_slice_threshold_fails_the_model_on_its_worst_slice(models):
    root, good, _ = models
    config = release_config(root / "lake", calibration_band=(0.5, 2.0), max_slice_ne=0.5)
    report = qualify(config, good)
    assert report["failed"] == ["worst_slice_ne"]
    check = next(c for c in report["checks"] if c["name"] == "worst_slice_ne")
    assert report["worst_slice"] in check["detail"]


def test_calibration_is_judged_with_its_interval(models):
    """A model just outside the band but within its sampling error of it is not failed on
    noise; the 4.5x-odds copy lies outside the band by more than its interval and fails."""
    root, good, bad = models
    measured = qualify(release_config(root / "lake", calibration_band=(0.5, 2.0)), good)
    m = measured["metrics"]
    assert m["calibration_ci_low"] < m["calibration"] < m["calibration_ci_high"]
    assert m["calibration"] > 1, m  # it over-predicts a little: a band edge fits below it
    # The band's edge between the interval's low end and the measured value.
    edge = max(1.0, (m["calibration_ci_low"] + m["calibration"]) / 2)
    config = release_config(root / "lake", calibration_band=(0.9, edge), max_ne=1.0)
    report = qualify(config, good)
    assert "calibration" not in report["failed"], (edge, m)
    bad_report = qualify(config, bad)
    assert bad_report["metrics"]["calibration_ci_low"] > edge
    assert "calibration" in bad_report["failed"]
