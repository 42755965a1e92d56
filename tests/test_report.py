"""The HTML report: built from small tables and a trained model, rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from freshlake.config import load_config
from freshlake.lake import open_lake
from tests.conftest import REPO
from tests.monitor_tables import LAST_DAY, write_examples, write_fresh_examples, write_traffic

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="headless Chromium not installed (Debian: apt-get install -y chromium)",
)


def write_stream_metrics(lake, batches: int = 12) -> None:
    from freshlake.streaming.metrics import METRICS_SCHEMA, METRICS_TABLE

    now = datetime.now(UTC)
    rows = [
        {
            "query": "joiner",
            "query_id": "q1",
            "batch_id": b,
            "committed_at": now + timedelta(seconds=3 * b),
            "input_rows": 500,
            "rows_written": {"fresh_examples": 40},
            "watermark": now,
            "state_rows": 1000,
            "late_rows_dropped": 0,
            "batch_duration_s": 1.5,
            "positives": 10,
            "latency_p50_s": 2.0 + 0.1 * b,
            "latency_p99_s": 4.0 + 0.2 * b,
            "latency_max_s": 5.0 + 0.2 * b,
            "dt": now.date().isoformat(),
        }
        for b in range(batches)
    ]
    df = lake.spark.createDataFrame(rows, METRICS_SCHEMA)
    lake.write(METRICS_TABLE, df, partition_by=["dt"])


def train_small_model(config, out: Path, monkeypatch) -> Path:
    from freshlake.training.launch import make_job
    from freshlake.training.trainer import train

    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    small = {"epochs": 1, "batch_size": 256, "num_workers": 0, "max_embedding_rows": 1024}
    config = config.model_copy(update={"training": config.training.model_copy(update=small)})
    train(make_job(config, out))
    return out


def chromium(html: Path, tmp_path: Path, *flags: str) -> str:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1200,2000",
        "--virtual-time-budget=5000",
        *flags,
        html.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_report_on_an_empty_lake_explains_what_is_missing(config, spark, tmp_path, capsys):
    from freshlake.cli import main

    out = tmp_path / "empty.html"
    assert main(["report", "--out", str(out), "--set", f"lake.root={config.lake.root}"]) == 0
    page = out.read_text()
    assert "data:image/png" not in page
    assert "no impressions table yet" in page and "no stream_metrics table" in page
    assert "no model given" in page and "checks run while building this report" in page


@needs_chromium
def test_report_with_every_plot_renders_in_headless_chromium(spark, tmp_path, monkeypatch):
    from freshlake.cli import main

    config = load_config(
        REPO / "conf" / "local.yaml",
        {"lake.root": str(tmp_path / "lake"), "sampling.negative_rate": 0.5},
    )
    lake = open_lake(config, spark)
    write_traffic(spark, lake)
    write_examples(lake, config)
    write_fresh_examples(lake, config, LAST_DAY)
    write_stream_metrics(lake)
    model = train_small_model(config, tmp_path / "model", monkeypatch)
    root = ["--set", f"lake.root={config.lake.root}", "--set", "sampling.negative_rate=0.5"]
    assert main(["monitor", "--model", str(model), *root]) == 0

    out = tmp_path / "report.html"
    assert main(["report", "--out", str(out), "--model", str(model), *root]) == 0
    page = out.read_text()
    assert page.count('src="data:image/png;base64,') == 5
    assert "http://" not in page and "https://" not in page  # self-contained
    assert "newest run recorded in monitor_alerts" in page
    assert re.search(r'<tr class="ok"><td>ok</td><td>source_share</td><td>region=apac', page)
    assert "12 micro-batches with positives" in page

    dom = chromium(out, tmp_path, "--dump-dom")
    assert "freshlake report [images 5/5]" in dom
    shot = tmp_path / "report.png"
    chromium(out, tmp_path, f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000
