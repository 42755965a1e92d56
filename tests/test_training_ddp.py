"""`freshlake train` under real torchrun: 2-process CPU DDP (gloo), 2 loader workers each.

On synthetic examples with a known logistic truth, negatives kept at 10% with weight 10:
the model beats a per-item popularity baseline, is calibrated with the weights and not
without them, every train row is consumed exactly once per epoch, and a run killed with
SIGKILL mid-epoch resumes and finishes with the same coverage.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
import yaml

from freshlake.cli import main as freshlake_main
from freshlake.training.artifact import CARD_FILE, PLOT_FILE, read_card
from freshlake.training.checkpoint import load_checkpoint
from freshlake.training.synthetic import SYNTHETIC_SPEC, synthetic_examples, write_synthetic_table

REPO = Path(__file__).resolve().parent.parent
NEGATIVE_RATE = 0.1


def write_config(config, path: Path, **training) -> Path:
    tree = config.model_dump(mode="json")
    tree["features"]["spec"] = [f.model_dump(mode="json") for f in SYNTHETIC_SPEC]
    tree["sampling"]["negative_rate"] = NEGATIVE_RATE
    tree["training"].update(
        {"batch_size": 256, "epochs": 3, "num_workers": 2, "seed": 1, "learning_rate": 0.01}
    )
    tree["training"].update(training)
    path.write_text(yaml.safe_dump(tree))
    return path


def freshlake(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "freshlake.cli", "--log-level", "WARNING", *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, **popen)


def train(config_path: Path, out: Path, *extra: str, timeout: int = 300) -> dict:
    proc = freshlake(
        "train", "--config", str(config_path), "--nproc", "2", "--out", str(out), *extra
    )
    assert proc.wait(timeout=timeout) == 0
    return read_card(out)


def consumed(out: Path) -> dict[int, Counter]:
    """Row ids consumed per epoch, from the audit segments of every rank."""
    per_epoch: dict[int, Counter] = {}
    for path in (out / "audit").glob("*.npy"):
        epoch = int(path.name.split("-")[0].removeprefix("epoch"))
        per_epoch.setdefault(epoch, Counter()).update(np.load(path).tolist())
    return per_epoch


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """An examples table of ~25k rows (from 150k impressions) and its train row ids."""
    root = tmp_path_factory.mktemp("ddp")
    table = synthetic_examples(150_000, seed=4, negative_rate=NEGATIVE_RATE, users=500)
    write_synthetic_table(str(root / "lake" / "examples"), table, rows_per_group=1000)
    train_rows = table.filter(pc.equal(table.column("split"), "train"))
    return root, sorted(train_rows.column("row_id").to_pylist())


@pytest.fixture(scope="module")
def weighted_model(lake, tmp_path_factory):
    from freshlake.config import load_config

    root, _ = lake
    config = load_config(REPO / "conf" / "local.yaml", {"lake.root": str(root / "lake")})
    path = write_config(config, root / "weighted.yaml")
    out = root / "weighted"
    return path, out, train(path, out, "--audit-column", "row_id")


def test_ddp_beats_popularity_calibrated_and_reads_each_row_once_per_epoch(lake, weighted_model):
    _, train_ids = lake
    _, out, card = weighted_model
    metrics = card["metrics"]["eval"]
    model, baseline = metrics["model"], metrics["popularity_baseline"]
    assert model["auc"] > baseline["auc"] + 0.04, (model, baseline)
    assert abs(model["calibration"] - 1) < 0.10, model
    assert card["training"]["world_size"] == 2 and card["training"]["backend"] == "gloo"
    assert card["data"]["rows_per_epoch"] == [len(train_ids)] * 3
    per_epoch = consumed(out)
    assert sorted(per_epoch) == [0, 1, 2]
    for epoch, counts in per_epoch.items():
        assert sorted(counts) == train_ids, f"epoch {epoch}: rows missing"
        assert max(counts.values()) == 1, f"epoch {epoch}: rows repeated"
    assert (out / PLOT_FILE).stat().st_size > 1000
    assert card["feature_spec_hash"] and card["code_version"] and card["data"]["version"] == 0


@pytest.mark.slow
def test_unweighted_model_is_off_until_corrected_and_compare_models_reports_pd(
    lake, weighted_model, capsys
):
    root, _ = lake
    config_path, weighted_out, _ = weighted_model
    config = yaml.safe_load(config_path.read_text())
    config["training"]["weighted_loss"] = False
    unweighted_path = root / "unweighted.yaml"
    unweighted_path.write_text(yaml.safe_dump(config))
    card = train(unweighted_path, root / "unweighted")
    metrics = card["metrics"]["eval"]
    assert metrics["model"]["calibration"] > 1.5, metrics["model"]
    assert abs(metrics["model_corrected"]["calibration"] - 1) < 0.2, metrics["model_corrected"]

    assert (
        freshlake_main(
            [
                "evaluate",
                "--config",
                str(unweighted_path),
                str(root / "unweighted"),
                "--negative-rate",
                str(NEGATIVE_RATE),
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["metrics"]["model_corrected"]["calibration"] == pytest.approx(
        metrics["model_corrected"]["calibration"]
    )
    assert (
        freshlake_main(
            [
                "compare-models",
                "--config",
                str(config_path),
                str(weighted_out),
                str(root / "unweighted"),
            ]
        )
        == 0
    )
    compared = json.loads(capsys.readouterr().out)
    assert compared["prediction_difference"]["pd_relative"] > 0.3  # calibrated vs not
    assert compared["model_a"]["rows"] == compared["model_b"]["rows"] > 0


@pytest.mark.slow
def test_kill_9_mid_epoch_then_restart_finishes_with_every_row_once_per_epoch(lake, tmp_path):
    from freshlake.config import load_config

    root, train_ids = lake
    config = load_config(REPO / "conf" / "local.yaml", {"lake.root": str(root / "lake")})
    path = write_config(config, tmp_path / "c.yaml", batch_size=64, checkpoint_every=20)
    out = tmp_path / "out"
    args = ("train", "--config", str(path), "--nproc", "2", "--out", str(out))
    proc = freshlake(*args, "--audit-column", "row_id", start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        saved = load_checkpoint(out) if (out / "checkpoint.pt").exists() else None
        if saved and saved["state"].step >= 40 and saved["state"].positions:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun, both ranks and their loader workers
    proc.wait()
    killed_at = load_checkpoint(out)["state"]
    assert killed_at.epoch < 3 and not (out / CARD_FILE).exists()

    restarted = freshlake(*args, "--audit-column", "row_id")
    assert restarted.wait(timeout=300) == 0
    card = read_card(out)
    assert card["training"]["steps"] > killed_at.step
    assert card["data"]["rows_per_epoch"] == [len(train_ids)] * 3
    for epoch, counts in consumed(out).items():
        assert sorted(counts) == train_ids and max(counts.values()) == 1, f"epoch {epoch}"
