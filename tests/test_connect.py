"""Spark Connect mode, proven: the jobs run unchanged as clients of the pyspark wheel's own Connect
server (`freshlake connect start`), the way Databricks serverless and shared clusters run user
code, and write the same tables, row for row, as local mode. The joiner's foreachBatch sink and
the Python Kafka data source run in the server's Python workers there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from freshlake.cli import main as freshlake_main
from tests.test_cluster import RUN_COLUMNS, same_rows

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
END, DAYS = "2026-01-04", "3"
BATCH_TABLES = ["impressions", "actions", "quarantine", "item_stats", "examples"]


def freshlake(*args: str) -> str:
    """A freshlake command in its own process (a Connect client); its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "PYSPARK_GATEWAY_PORT")}
    result = subprocess.run(
        [sys.executable, "-m", "freshlake.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"freshlake {args[0]} failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`freshlake connect start` on a free port; its `sc://` URL. Stopped after the module."""
    state = str(tmp_path_factory.mktemp("connect"))
    started = freshlake("connect", "start", "--state-dir", state)
    url = re.search(r"sc://127\.0\.0\.1:\d+", started).group(0)
    assert url in freshlake("connect", "status", "--state-dir", state)
    yield url
    assert "stopped" in freshlake("connect", "stop", "--state-dir", state)


@pytest.fixture(scope="module")
def lakes(server, spark, kafka_broker, tmp_path_factory):
    """The pipeline (ingest, item stats, builder, a short joiner run) through the Connect server
    and in local mode (this test run's session): (Connect lake, local lake)."""
    root = tmp_path_factory.mktemp("connect-lakes")
    logs = root / "logs"
    suffix = uuid.uuid4().hex[:8]
    kafka = [
        *("--set", f"kafka.bootstrap_servers={kafka_broker.bootstrap_servers}"),
        *("--set", f"kafka.topics.impressions=impressions-{suffix}"),
        *("--set", f"kafka.topics.actions=actions-{suffix}"),
    ]
    assert freshlake_main(["generate-logs", "--out", str(logs), "--impressions", "2000",
                           "--set", f"generate.days={DAYS}"]) == 0  # fmt: skip
    assert freshlake_main(["produce", "--logs", str(logs), "--rate", "100000", *kafka]) == 0

    def pipeline(run, lake: Path, *mode: str) -> None:
        common = [
            *("--set", f"lake.root={lake}"),
            *("--set", f"streaming.checkpoint_root={lake}-checkpoints"),
            *mode,
        ]
        run("ingest", "--logs", str(logs), *common)
        run("item-stats", "--end", END, "--window-days", DAYS, *common)
        run("build-training-set", "--end", END, "--window-days", DAYS, *common)
        run("stream-join", "--available-now", *kafka, *common)

    def in_process(*args: str) -> None:
        assert freshlake_main(list(args)) == 0, args

    pipeline(freshlake, root / "connect-lake", "--set", f"spark.remote={server}")
    pipeline(in_process, root / "local-lake")
    return root / "connect-lake", root / "local-lake"


def test_pipeline_through_spark_connect_matches_local_mode(spark, lakes):
    for table in BATCH_TABLES:
        assert same_rows(spark, table, *lakes) > 0, table
    same_rows(spark, "fresh_actions", *lakes)


def test_joiner_through_spark_connect_writes_local_modes_rows(spark, lakes):
    """The joiner writes the same rows through Connect as in local mode, negatives included:
    the actions have one watermark in both (set in the join's branch only; Connect analyses
    each use of a DataFrame apart, so a watermark on both branches was two there, and the
    sparse secondary actions held the query's watermark, and the last negatives, back)."""
    connect, local = (read_table(spark, lake, "fresh_examples") for lake in lakes)
    assert connect.where("label = 1").count() > 0 and connect.where("label = 0").count() > 0
    assert connect.exceptAll(local).count() == 0, "a row local mode did not write"
    assert local.exceptAll(connect).count() == 0, "a row Connect did not write"


def read_table(spark, lake: Path, table: str):
    """A table's rows without the run's own columns (as `same_rows` compares them)."""
    from deltalake import DeltaTable
    from pyspark.sql import functions as F
    from pyspark.sql.types import MapType

    files = DeltaTable(str(lake / table)).file_uris()
    df = spark.read.option("basePath", str(lake / table)).parquet(*files)
    return df.select(
        *[
            F.array_sort(F.map_entries(f.name)).alias(f.name)
            if isinstance(f.dataType, MapType)
            else F.col(f.name)
            for f in df.schema.fields
            if f.name not in RUN_COLUMNS
        ]
    )


def test_joiner_metrics_reach_the_client_through_connect(lakes):
    from freshlake.streaming.metrics import read_metrics_log

    connect_lake, local_lake = lakes
    rows = {
        name: read_metrics_log(Path(f"{lake}-checkpoints") / "joiner-metrics.jsonl")
        for name, lake in (("connect", connect_lake), ("local", local_lake))
    }
    assert rows["connect"], "the server-side sink's reports reached the client's recorder"
    assert len(rows["connect"]) == len(rows["local"])
    for column in ("input_rows", "duplicates_dropped"):
        connect, local = ([r[column] for r in rows[name]] for name in ("connect", "local"))
        assert connect == local, column
    written = {name: [r["rows_written"] for r in found] for name, found in rows.items()}
    assert written["connect"] == written["local"]


def test_csv_and_parquet_ingest_through_spark_connect_matches_local_mode(spark, server, tmp_path):
    """CSV files read in one scan per header (their first lines in one job) and Parquet files in
    one scan per layout work the same as a Connect client as in local mode."""
    from tests.test_ingest import BAD, GOOD, _write_log

    inputs = tmp_path / "in"
    _write_log(inputs / "csv" / "a.csv", GOOD[0:3])
    _write_log(inputs / "csv" / "b.csv", [*GOOD[3:5], BAD["bad_type"]])
    _write_log(inputs / "parquet" / "a.parquet", GOOD[5:7])
    _write_log(inputs / "parquet" / "b.parquet", [*GOOD[7:9], BAD["out_of_range"]])
    lakes = tmp_path / "connect-lake", tmp_path / "local-lake"
    for lake, mode in zip(lakes, (["--set", f"spark.remote={server}"], []), strict=True):
        for fmt in ("csv", "parquet"):
            args = ["ingest", "--impressions", str(inputs / fmt), "--set", f"lake.root={lake}"]
            if mode:
                freshlake(*args, *mode)
            else:
                assert freshlake_main(args) == 0
    assert same_rows(spark, "impressions", *lakes) == 9
    assert same_rows(spark, "quarantine", *lakes) == 2
