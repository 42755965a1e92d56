"""The Open Bandit Dataset sample ingests with every record accounted for."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from freshlake.ingest.obd import ingest_obd
from tests.conftest import SHARED_DATA

OBD = SHARED_DATA / "obd"
pytestmark = pytest.mark.skipif(not OBD.is_dir(), reason=f"OBD sample not found at {OBD}")


def csv_truth(folder: Path) -> tuple[Counter, Counter]:
    """Rows and clicks per (campaign, policy), read with Python's csv module."""
    rows, clicks = Counter(), Counter()
    for path in sorted(folder.glob("*.csv")):
        policy, campaign = path.stem.split("_")
        with path.open(newline="") as handle:
            for record in csv.DictReader(handle):
                rows[(campaign, policy)] += 1
                clicks[(campaign, policy)] += record["click"] == "1"
    return rows, clicks


def test_obd_counts_reconcile_exactly(spark, config, lake):
    rows, clicks = csv_truth(OBD)
    assert sum(rows.values()) == 40_000 and sum(clicks.values()) == 46 + 46 + 69 + 46

    summary = ingest_obd(config, spark, str(OBD))

    assert (summary.records("impressions"), summary.valid("impressions")) == (40_000, 40_000)
    assert (summary.records("actions"), summary.valid("actions")) == (207, 207)
    assert lake.read("quarantine").count() == 0, "nothing in the sample is bad"
    impressions = lake.read("impressions")
    per_file = impressions.groupBy("surface", "model_version").count().collect()
    assert {(r.surface, r.model_version): r["count"] for r in per_file} == dict(rows)
    assert impressions.select("impression_id").distinct().count() == 40_000
    assert impressions.where("user_id IS NULL OR pred_ctr IS NOT NULL").count() == 0
    one = impressions.where("impression_id = 'obd-bts-men-0'").first()
    assert (one.item_id, one.position, one.surface) == ("men-2", 2, "men")
    assert one.features["propensity_score"] == "0.045525"
    assert "user-item_affinity_33" in one.features

    actions = lake.read("actions")
    joined = actions.join(impressions, "impression_id").select(
        "surface",
        "model_version",
        "action",
        (F.col("action_at") - F.col("served_at")).alias("delay"),
    )
    per_file_clicks = joined.groupBy("surface", "model_version").count().collect()
    assert {(r.surface, r.model_version): r["count"] for r in per_file_clicks} == dict(clicks)
    delays = {
        (r.action, r.delay.total_seconds())
        for r in joined.select("action", "delay").distinct().collect()
    }
    assert delays == {("click", 1.0)}

    (run,) = lake.read("job_runs").collect()
    assert run.counts["impressions.records"] == 40_000
    assert run.counts["actions.valid"] == 207
    assert run.counts["impressions.quarantined"] == run.counts["actions.quarantined"] == 0

    again = ingest_obd(config, spark, str(OBD))
    assert all(o.skipped for o in again.outcomes)
    assert lake.read("impressions").count() == 40_000


def test_bad_obd_rows_are_quarantined_and_counted(spark, config, lake, tmp_path):
    lines = (OBD / "bts_men.csv").read_text().splitlines()[:6]  # header + 5 rows
    header, data = lines[0], [line.split(",") for line in lines[1:]]
    data[1][1] = "sometime on sunday"  # timestamp
    data[2][4] = "2"  # click
    broken = "5,2019-11-24 00:09:00+00:00,3"
    folder = tmp_path / "obd"
    folder.mkdir()
    (folder / "bts_men.csv").write_text(
        "\n".join([header, *(",".join(row) for row in data), broken]) + "\n"
    )

    summary = ingest_obd(config, spark, str(folder))

    assert summary.records("impressions") == 6 and summary.valid("impressions") == 4
    assert summary.quarantined("impressions") == {"bad_timestamp": 1, "malformed_row": 1}
    assert summary.records("actions") == 1 + sum(row[4] == "1" for row in data)
    assert summary.quarantined("actions") == {"unknown_action": 1}
    raw = {r.reason: r.raw for r in lake.read("quarantine").collect()}
    assert raw["malformed_row"] == broken
    assert "sometime on sunday" in raw["bad_timestamp"]
