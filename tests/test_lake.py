"""The delta-rs engine: atomic commits of files written by Spark, idempotence, time travel."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from freshlake.lake import SchemaMismatchError, read_table_arrow
from freshlake.lake.catalog import Lake, choose_engine
from freshlake.lake.delta_rs import DeltaRsEngine

DAY0 = 1767225600  # 2026-01-01T00:00:00Z


def events(spark, n: int = 1000, partitions: int = 4):
    """n rows over three UTC days, with a map and an array column."""
    return spark.range(0, n, numPartitions=partitions).select(
        F.format_string("imp-%05d", "id").alias("impression_id"),
        (F.col("id") % 7).cast("int").alias("position"),
        F.timestamp_seconds(F.lit(DAY0) + F.col("id") * 250).alias("served_at"),
        F.create_map(F.lit("device"), (F.col("id") % 3).cast("string")).alias("features"),
        F.array(F.col("id"), F.col("id") + 1).alias("ids"),
        F.to_date(F.timestamp_seconds(F.lit(DAY0) + F.col("id") * 250)).alias("dt"),
    )


def parquet_files(lake: Lake, table: str) -> set[str]:
    return {str(p) for p in Path(lake.uri(table)).rglob("*.parquet")}


def table_files(lake: Lake, table: str) -> set[str]:
    """Every file under the table's folder but its log, relative to the table."""
    root = Path(lake.uri(table))
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != "_delta_log"
    }


def referenced_files(lake: Lake, table: str) -> set[str]:
    """The data files the table's latest version references, relative to the table."""
    root = Path(lake.uri(table))
    return {str(Path(u).relative_to(root)) for u in DeltaTable(str(root)).file_uris()}


def test_round_trip_keeps_rows_types_and_partitions(spark, lake):
    df = events(spark)
    result = lake.write("events", df, partition_by=["dt"])
    assert (result.version, result.rows) == (0, 1000)
    back = lake.read("events")
    assert back.schema.simpleString() == df.schema.simpleString()
    assert sorted(back.collect()) == sorted(df.collect())
    table = DeltaTable(lake.uri("events"))
    assert table.metadata().partition_columns == ["dt"]
    assert {p["dt"] for p in table.partitions()} == {"2026-01-01", "2026-01-02", "2026-01-03"}


def test_file_statistics_are_in_the_log(spark, lake):
    lake.write("events", events(spark, 300, partitions=1), partition_by=["dt"])
    actions = pa.table(DeltaTable(lake.uri("events")).get_add_actions(flatten=True)).to_pylist()
    assert sum(a["num_records"] for a in actions) == 300
    first_day = next(a for a in actions if a["partition.dt"] == dt.date(2026, 1, 1))
    assert first_day["min.position"] == 0 and first_day["max.position"] == 6


def test_other_readers_see_the_same_table(spark, lake):
    lake.write("events", events(spark, 500), partition_by=["dt"])
    table = read_table_arrow(lake.uri("events"))  # delta-rs reads the log, Arrow the files
    assert table.num_rows == 500
    assert set(table.column("impression_id").to_pylist()) == {f"imp-{i:05d}" for i in range(500)}


def test_repeated_app_transaction_writes_nothing(spark, lake):
    df = events(spark, 200)
    first = lake.write("events", df, partition_by=["dt"], app_id="ingest-a", app_version=1)
    files = parquet_files(lake, "events")
    replay = lake.write("events", df, partition_by=["dt"], app_id="ingest-a", app_version=1)
    older = lake.write("events", df, partition_by=["dt"], app_id="ingest-a", app_version=0)
    assert replay.skipped and older.skipped
    assert replay.version == older.version == first.version == 0
    assert parquet_files(lake, "events") == files, "a skipped write must not even write files"
    assert lake.read("events").count() == 200
    nxt = lake.write("events", df, partition_by=["dt"], app_id="ingest-a", app_version=2)
    assert not nxt.skipped and nxt.version == 1
    assert lake.transaction_version("events", "ingest-a") == 2
    other = lake.write("events", df, partition_by=["dt"], app_id="ingest-b", app_version=1)
    assert not other.skipped and lake.read("events").count() == 600


def test_one_commit_records_several_app_transactions(spark, lake):
    df = events(spark, 60)
    both = {"file-a": 1, "file-b": 1}
    assert lake.write("events", df, partition_by=["dt"], app_transactions=both).version == 0
    assert lake.transaction_versions("events", ["file-a", "file-b", "file-c"]) == both
    assert lake.write("events", df, app_transactions=both).skipped
    with pytest.raises(ValueError, match="1 of the write's 2 app transactions"):
        lake.write("events", df, app_transactions={"file-b": 1, "file-c": 1})
    assert lake.version("events") == 0 and lake.read("events").count() == 60


def test_arrow_appends_read_like_spark_writes_and_are_idempotent(spark, lake):
    df = events(spark, 400)
    lake.write("events", df.where("id < 200"), partition_by=["dt"])
    arrow = df.where("id >= 200").toArrow()
    first = lake.append_arrow("events", arrow, app_id="sink", app_version=7)
    assert (first.version, first.rows, first.skipped) == (1, 200, False)
    assert lake.append_arrow("events", arrow, app_id="sink", app_version=7).skipped
    back = lake.read("events")
    assert back.schema.simpleString() == df.schema.simpleString()
    assert sorted(back.collect()) == sorted(df.collect())
    stats = pa.table(DeltaTable(lake.uri("events")).get_add_actions(flatten=True)).to_pylist()
    assert sum(a["num_records"] for a in stats) == 400
    with pytest.raises(SchemaMismatchError, match=r"missing columns \['features'\]"):
        lake.append_arrow("events", arrow.drop_columns(["features"]))
    created = lake.append_arrow("fresh", arrow, partition_by=["dt"])
    assert created.version == 0 and lake.partition_columns("fresh") == ["dt"]


def test_partition_overwrite_replaces_exactly_those_partitions(spark, lake):
    df = events(spark, 1000)
    lake.write("events", df, partition_by=["dt"])
    before = {r["dt"]: r["count"] for r in lake.read("events").groupBy("dt").count().collect()}
    day2 = dt.date(2026, 1, 2)
    replacement = df.where(F.col("dt") == F.lit(day2)).limit(5)
    lake.write("events", replacement, mode="overwrite", replace_partitions={"dt": ["2026-01-02"]})
    after = {r["dt"]: r["count"] for r in lake.read("events").groupBy("dt").count().collect()}
    assert after[day2] == 5
    assert {k: v for k, v in after.items() if k != day2} == {
        k: v for k, v in before.items() if k != day2
    }


def test_partition_overwrite_with_rows_outside_is_refused(spark, lake):
    df = events(spark, 1000)
    lake.write("events", df, partition_by=["dt"])
    with pytest.raises(ValueError, match="dt=2026-01-01"):
        lake.write("events", df, mode="overwrite", replace_partitions={"dt": ["2026-01-02"]})
    assert lake.version("events") == 0


def test_full_overwrite_and_time_travel(spark, lake):
    df = events(spark, 300)
    lake.write("events", df, partition_by=["dt"])
    lake.write("events", df.limit(10), mode="overwrite")
    assert lake.read("events").count() == 10
    assert lake.read("events", version=0).count() == 300
    # Files of version 0 are still on disk; reads go through the log, not the folder.
    assert len(parquet_files(lake, "events")) > len(DeltaTable(lake.uri("events")).file_uris())


def test_schema_mismatch_is_refused_with_the_column_named(spark, lake):
    df = events(spark, 50)
    lake.write("events", df, partition_by=["dt"])
    with pytest.raises(SchemaMismatchError, match=r"position.*string"):
        lake.write("events", df.withColumn("position", F.col("position").cast("string")))
    with pytest.raises(SchemaMismatchError, match=r"unexpected columns \['surprise'\]"):
        lake.write("events", df.withColumn("surprise", F.lit(1)))
    with pytest.raises(SchemaMismatchError, match=r"missing columns \['features'\]"):
        lake.write("events", df.drop("features"))
    assert lake.version("events") == 0


def test_spark_job_failing_midway_leaves_no_version_and_no_files(spark, lake):
    lake.write("events", events(spark, 100), partition_by=["dt"])
    before = table_files(lake, "events")

    @F.udf("int")
    def explode_on_last_task(position: int, marker: str) -> int:
        if marker == "imp-00999":
            raise RuntimeError("simulated executor failure")
        return position

    df = events(spark, 1000, partitions=4)
    failing = df.withColumn("position", explode_on_last_task("position", "impression_id"))
    with pytest.raises(Exception, match="simulated executor failure"):
        lake.write("events", failing)
    # Earlier tasks wrote files, but nothing was committed: same version, same rows, and the
    # write's own folder (Spark's staging with the finished tasks' files) is gone.
    assert lake.version("events") == 0
    assert lake.read("events").count() == 100
    assert table_files(lake, "events") == before == referenced_files(lake, "events")


class DiesBeforeCommit(DeltaRsEngine):
    """An engine whose driver dies after Spark wrote the files, before the Delta commit."""

    def _commit(self, *args, **kwargs) -> None:
        raise RuntimeError("driver killed before the commit")


def test_files_of_a_write_that_died_before_its_commit_are_vacuumed(spark, lake):
    lake.write("events", events(spark, 100), partition_by=["dt"])
    dying = Lake(lake.config, spark, DiesBeforeCommit(spark))
    with pytest.raises(RuntimeError, match="before the commit"):
        dying.write("events", events(spark, 300), partition_by=["dt"])
    assert lake.version("events") == 0
    assert lake.read("events").count() == 100
    orphans = table_files(lake, "events") - referenced_files(lake, "events")
    assert orphans and all(o.startswith("dt=") and o.endswith(".parquet") for o in orphans)
    removed = DeltaTable(lake.uri("events")).vacuum(
        retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True
    )
    assert set(removed) == orphans
    assert table_files(lake, "events") == referenced_files(lake, "events")
    assert lake.read("events").count() == 100


# A writer in its own process whose last task never ends: the other tasks' files are staged.
KILLED_WRITER = """
import sys, time
from pyspark.sql import functions as F
from freshlake.config import load_config
from freshlake.lake import open_lake
from freshlake.spark import get_spark
from tests.test_lake import events

config = load_config("conf/local.yaml", {"lake.root": sys.argv[1]})
spark = get_spark(config)

@F.udf("int")
def hang_on_last_task(position, marker):
    if marker == "imp-00999":
        time.sleep(3600)
    return position

df = events(spark, 1000, partitions=4)
stuck = df.withColumn("position", hang_on_last_task("position", "impression_id"))
open_lake(config, spark).write("events", stuck)
"""


@pytest.mark.slow
def test_writer_killed_mid_job_leaves_no_version_and_vacuum_removes_its_files(spark, lake):
    lake.write("events", events(spark, 100), partition_by=["dt"])
    repo = Path(__file__).resolve().parent.parent
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, lake.root],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not any(Path(lake.uri("events")).glob("write-*/_temporary/0/task_*/**/*.parquet")):
            assert writer.poll() is None and time.monotonic() < deadline, "no staged files"
            time.sleep(1)
    finally:
        os.killpg(writer.pid, signal.SIGKILL)
        writer.wait(60)
    assert lake.version("events") == 0
    assert lake.read("events").count() == 100
    orphans = table_files(lake, "events") - referenced_files(lake, "events")
    assert orphans and all(o.startswith("write-") for o in orphans)
    removed = DeltaTable(lake.uri("events")).vacuum(
        retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True
    )
    assert set(removed) == orphans
    assert table_files(lake, "events") == referenced_files(lake, "events")


def test_spark_writes_its_files_into_the_tables_partition_folders(spark, lake):
    lake.write("events", events(spark, 500), partition_by=["dt"])
    lake.write("flat", events(spark, 50, partitions=2))
    for table in ("events", "flat"):
        on_disk = table_files(lake, table)
        assert on_disk == referenced_files(lake, table), "no _SUCCESS, checksum or staged file"
        assert not any(part.startswith(("_", ".")) for f in on_disk for part in f.split("/"))
        assert [
            p.name for p in Path(lake.uri(table)).iterdir() if p.name.startswith("write-")
        ] == []
    assert all(
        re.fullmatch(r"dt=2026-01-0[1-3]/part-[^/]+\.parquet", f)
        for f in table_files(lake, "events")
    )
    footer = pq.read_metadata(Path(lake.uri("flat")) / sorted(table_files(lake, "flat"))[0])
    served_at = footer.schema.column(footer.schema.names.index("served_at"))
    assert served_at.physical_type == "INT64", "TIMESTAMP_MICROS, not Spark's legacy INT96"
    assert "isAdjustedToUTC=true, timeUnit=microseconds" in str(served_at.logical_type)


def test_statistics_in_the_log_match_the_rows_of_each_file(spark, lake):
    df = spark.range(0, 400, numPartitions=2).select(
        F.when(F.col("id") % 5 == 0, F.lit(None)).otherwise(F.col("id")).alias("n"),
        # One file holds a NaN: its bounds on x cannot be stated, the other files' can.
        F.when(F.col("id") == 7, F.lit(float("nan"))).otherwise(F.col("id") / 3).alias("x"),
        F.timestamp_micros(F.lit(DAY0 * 1_000_000) + F.col("id") * 1_000_123).alias("at"),
        F.when(F.col("id") % 3 == 0, F.lit("third")).alias("label"),
        (F.col("id") % 2).cast("int").alias("part"),
    )
    lake.write("stats", df, partition_by=["part"])
    lake.append_arrow("stats", df.where("id < 20").toArrow())  # the driver-side writer
    root = Path(lake.uri("stats"))
    adds = [
        json.loads(line)["add"]
        for log in sorted((root / "_delta_log").glob("*.json"))
        for line in log.read_text().splitlines()
        if '"add"' in line
    ]
    assert len(adds) >= 5 and sum(json.loads(a["stats"])["numRecords"] for a in adds) == 420
    unbounded_x = 0
    for add in adds:
        stats = json.loads(add["stats"])
        rows = pq.read_table(root / unquote(add["path"]))
        assert stats["numRecords"] == rows.num_rows
        assert set(add["partitionValues"]) == {"part"}
        assert stats["nullCount"] == {c: rows.column(c).null_count for c in rows.column_names}
        n = rows.column("n").drop_null().to_pylist()
        assert {v % 2 for v in n} == {int(add["partitionValues"]["part"])}
        assert (stats["minValues"]["n"], stats["maxValues"]["n"]) == (min(n), max(n))
        x = rows.column("x").to_pylist()
        if any(math.isnan(v) for v in x):
            unbounded_x += 1
            assert "x" not in stats["minValues"] and "x" not in stats["maxValues"]
        else:
            assert (stats["minValues"]["x"], stats["maxValues"]["x"]) == (min(x), max(x))
        at = rows.column("at").to_pylist()
        low, high = (dt.datetime.fromisoformat(stats[k]["at"]) for k in ("minValues", "maxValues"))
        millisecond = dt.timedelta(milliseconds=1)
        assert low <= min(at) < low + millisecond and high - millisecond < max(at) <= high
        assert "label" not in stats["minValues"], "strings carry null counts only"
    assert unbounded_x == 2, "the Spark file and the Arrow file holding id 7"


def test_partition_values_with_special_characters_and_nulls(spark, lake):
    rows = [("a/b c", 1), ("50%=x", 2), (None, 3)]
    df = spark.createDataFrame(rows, "region string, n int")
    lake.write("odd", df, partition_by=["region"])
    assert sorted(lake.read("odd").collect(), key=lambda r: r.n) == [(r[0], r[1]) for r in rows]
    assert read_table_arrow(lake.uri("odd")).num_rows == 3


def test_empty_write_creates_a_readable_table(spark, lake):
    df = events(spark, 10).limit(0)
    result = lake.write("empty", df, partition_by=["dt"])
    assert result.version == 0 and result.rows == 0
    assert lake.read("empty").count() == 0
    assert lake.read("empty").schema.names == df.schema.names


def test_auto_engine_is_delta_rs_without_delta_jars(spark, config):
    assert isinstance(choose_engine(config.lake, spark), DeltaRsEngine)
    config.lake.engine = "delta-spark"
    with pytest.raises(RuntimeError, match="not on Spark's classpath"):
        choose_engine(config.lake, spark)


def test_register_views_exposes_every_table_to_sql(spark, lake):
    lake.write("events", events(spark, 30), partition_by=["dt"])
    lake.write("odd", spark.createDataFrame([("x", 1)], "region string, n int"))
    assert lake.register_views() == ["events", "odd"]
    assert spark.sql("SELECT count(*) AS n FROM events").first().n == 30


def test_delete_rewrites_only_the_files_holding_matching_rows(spark, lake):
    df = events(spark, 600, partitions=1)
    serial = F.substring("impression_id", 5, 5).cast("int")
    for part in range(3):  # one file per day and append: 2 days x 3 appends
        lake.write("events", df.where(serial % 3 == part), partition_by=["dt"])
    files_before = set(DeltaTable(lake.uri("events")).file_uris())
    assert len(files_before) == 6
    # Rows of the second append on the second day: one file holds them all.
    condition = (
        "CAST(substring(impression_id, 5, 5) AS INT) % 3 = 1"
        " AND dt = DATE'2026-01-02' AND position <> 0"
    )
    expected = df.where(condition).count()
    assert expected > 0

    result = lake.delete("events", condition, metadata={"freshlake.operation": "test-delete"})

    assert (result.rows_removed, result.files_rewritten, result.version) == (expected, 1, 3)
    assert lake.read("events").where(condition).count() == 0
    assert sorted(lake.read("events").collect()) == sorted(df.where(f"NOT ({condition})").collect())
    files_after = set(DeltaTable(lake.uri("events")).file_uris())
    assert len(files_before - files_after) == 1 and len(files_after - files_before) == 1
    commit = lake.last_commit("events")
    assert commit.version == 3 and commit.metadata["freshlake.operation"] == "test-delete"
    nothing = lake.delete("events", "impression_id = 'no-such-row'")
    assert (nothing.rows_removed, nothing.files_rewritten, nothing.version) == (0, 0, 3)


def test_merge_update_sets_matched_rows_and_inserts_nothing(spark, lake):
    lake.write("events", events(spark, 300), partition_by=["dt"])
    source = pa.table(
        {
            "impression_id": ["imp-00001", "imp-00002", "imp-99999"],  # the last one matches none
            "dt": pa.array([dt.date(2026, 1, 1)] * 3, pa.date32()),
            "position": pa.array([100, 0, 100], pa.int32()),
        }
    )
    updated = lake.merge_update(
        "events",
        source,
        keys=["dt", "impression_id"],
        updates={
            "position": "CASE WHEN s.position > t.position THEN s.position ELSE t.position END"
        },
    )
    assert updated == 2
    after = {r.impression_id: r.position for r in lake.read("events").collect()}
    before = {r.impression_id: r.position for r in events(spark, 300).collect()}
    assert after["imp-00001"] == 100 and after["imp-00002"] == before["imp-00002"] == 2
    assert {k: v for k, v in after.items() if k != "imp-00001"} == {
        k: v for k, v in before.items() if k != "imp-00001"
    }
    assert lake.last_commit("events").operation == "MERGE"


def test_add_columns_reads_old_rows_as_null_and_refuses_required_columns(spark, lake):
    lake.write("events", events(spark, 50), partition_by=["dt"])
    lake.add_columns("events", [pa.field("score", pa.float64()), pa.field("tag", pa.string())])
    assert lake.arrow_schema("events").names[-2:] == ["score", "tag"]
    back = lake.read("events")
    assert back.count() == 50 and back.where("score IS NOT NULL OR tag IS NOT NULL").count() == 0
    with pytest.raises(ValueError, match=r"must be nullable: \['id2'\]"):
        lake.add_columns("events", [pa.field("id2", pa.int64(), nullable=False)])


def test_read_arrow_and_last_commit(spark, lake):
    df = events(spark, 120)
    lake.write("events", df, partition_by=["dt"])
    lake.write("events", df.limit(10), metadata={"freshlake.run": "r-2"})
    assert lake.read_arrow("events").num_rows == 130
    first = lake.read_arrow("events", version=0)
    assert sorted(first.column("impression_id").to_pylist()) == [f"imp-{i:05d}" for i in range(120)]
    commit = lake.last_commit("events")
    assert (commit.version, commit.operation) == (1, "WRITE")
    assert commit.metadata == {"freshlake.run": "r-2"}
    age = dt.datetime.now(dt.UTC) - commit.committed_at
    assert dt.timedelta(0) <= age < dt.timedelta(minutes=5)
    assert lake.partition_columns("events") == ["dt"]
