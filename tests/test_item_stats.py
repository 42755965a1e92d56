"""The item_stats job: per-item impressions and clicks over a trailing window, against truth."""

from __future__ import annotations

from datetime import UTC, date, datetime

from pyspark.sql import functions as F

from freshlake.cli import run_module
from freshlake.lake import open_lake
from tests.batch_logs import generate, write_logs

START = date(2026, 1, 1)


def test_item_stats_counts_unique_valid_impressions_and_attributed_clicks(
    spark, config, tmp_path, capsys
):
    lake = open_lake(config, spark)
    logs = generate(
        3_000, START, 7, items=25, seed=5, duplicate_share=0.02, invalid_share=0.01, misdated=5
    )
    write_logs(spark, lake, logs)
    argv = ["--end", "2026-01-08", "--window-days", "7", "--set", f"lake.root={config.lake.root}"]

    assert run_module("freshlake.jobs.item_stats", argv) == 0
    assert (
        "item_stats [2026-01-01, 2026-01-08): 25 items, 3,000 impressions"
        in capsys.readouterr().out
    )

    stats = {r.item_id: r for r in lake.read("item_stats").collect()}
    truth = logs.truth.groupby("item_id").agg(n=("clicked", "size"), clicks=("clicked", "sum"))
    assert {k: (r.impressions, r.clicks) for k, r in stats.items()} == {
        k: (int(r.n), int(r.clicks)) for k, r in truth.iterrows()
    }
    first = next(iter(stats.values()))
    assert (first.window_start, first.window_end) == (START, date(2026, 1, 8))

    # A rerun of the same window end replaces its snapshot; another window end adds one.
    assert run_module("freshlake.jobs.item_stats", argv) == 0
    assert lake.read("item_stats").count() == len(stats)
    shorter = [
        "--end",
        "2026-01-04",
        "--window-days",
        "3",
        "--set",
        f"lake.root={config.lake.root}",
    ]
    assert run_module("freshlake.jobs.item_stats", shorter) == 0
    ends = lake.read("item_stats").groupBy("window_end").agg(F.sum("impressions").alias("n"))
    three_days_end = datetime(2026, 1, 4, tzinfo=UTC).timestamp()
    in_three_days = int((logs.truth["served_at"] < three_days_end).sum())
    assert {r.window_end: r.n for r in ends.collect()} == {
        date(2026, 1, 8): 3_000,
        date(2026, 1, 4): in_three_days,
    }
    runs = lake.read("job_runs").where(F.col("job") == "item-stats").collect()
    assert len(runs) == 3 and all(r.status == "succeeded" for r in runs)
    assert all(r.output_versions["item_stats"] >= 0 for r in runs)
