"""Privacy (forget users) and maintenance (compaction, vacuum) on real Delta tables."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from freshlake.features.schemas import ACTION_SCHEMA, IMPRESSION_SCHEMA, QUARANTINE_SCHEMA
from freshlake.lake.delta_rs_ops import log_paths_of
from freshlake.ops.maintenance import compact_table, vacuum_table
from freshlake.ops.privacy import PRIVACY_LOG_TABLE, forget_users, user_hash

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FORGET = "user-forget-me-42"


def impressions(spark, n_users: int = 20, per_user: int = 15):
    rows = []
    for u in range(n_users):
        user = FORGET if u == 7 else f"user-{u:03d}"
        for i in range(per_user):
            at = T0 + timedelta(hours=u + i * 5)
            rows.append(
                {
                    "impression_id": f"imp-{u:03d}-{i:03d}",
                    "request_id": f"req-{u:03d}-{i // 3}",
                    "user_id": user,
                    "item_id": f"item-{i % 4}",
                    "served_at": at,
                    "position": 1 + i % 3,
                    "features": {"device": "ios"},
                    "dt": at.date(),
                }
            )
    return spark.createDataFrame(rows, IMPRESSION_SCHEMA)


def seed_lake(spark, lake):
    imps = impressions(spark)
    # Three appends: the user's rows are spread over several files per partition.
    for part in range(3):
        lake.write("impressions", imps.where(F.col("position") == part + 1), partition_by=["dt"])
    actions = imps.where("position = 1").select(
        F.concat(F.lit("act-"), "impression_id").alias("action_id"),
        "impression_id",
        # Half the actions were logged without a user id: found through their impression.
        F.when(F.col("user_id") == FORGET, F.lit(None))
        .otherwise(F.col("user_id"))
        .alias("user_id"),
        F.lit("click").alias("action"),
        (F.col("served_at") + F.expr("INTERVAL 30 SECONDS")).alias("action_at"),
        *[F.lit(None).cast(f.dataType).alias(f.name) for f in ACTION_SCHEMA.fields[5:-1]],
        "dt",
    )
    lake.write("actions", actions, partition_by=["dt"])
    quarantine = spark.createDataFrame(
        [
            ("impressions", "missing_field", "item_id", f'{{"user_id": "{FORGET}"}}'),
            (
                "actions",
                "bad_timestamp",
                "action_at",
                '{"impression_id": "imp-007-001", "action_at": "x"}',
            ),
            ("impressions", "malformed_json", None, '{"user_id": "user-001", '),
        ],
        "source string, reason string, detail string, raw string",
    ).select(
        "source",
        "reason",
        "detail",
        "raw",
        *[F.lit(None).cast(f.dataType).alias(f.name) for f in QUARANTINE_SCHEMA.fields[4:8]],
        F.lit("run-1").alias("run_id"),
        F.lit(T0).cast("timestamp").alias("quarantined_at"),
        F.lit(T0.date()).alias("dt"),
    )
    lake.write("quarantine", quarantine, partition_by=["dt"])
    return imps


def cells_mentioning(root: Path, needle: str) -> list[str]:
    """Every Parquet file on disk (referenced or not) and every log file that contains `needle`."""
    hits = []
    for path in root.rglob("*"):
        if path.suffix == ".parquet" and "_delta_log" not in path.parts:
            table = pq.read_table(path)
            if needle in str(table.to_pylist()):
                hits.append(str(path))
        elif path.is_file() and needle.encode() in path.read_bytes():
            hits.append(str(path))
    return hits


def test_forget_user_removes_every_row_and_file(spark, lake, config):
    imps = seed_lake(spark, lake)
    assert cells_mentioning(Path(lake.root), FORGET), "the seeded lake must contain the user"
    config.privacy.vacuum_retention_hours = 0
    report = forget_users(lake, [FORGET], config.privacy, "req-1")

    assert report.rows_removed == {"impressions": 15, "actions": 5, "quarantine": 2}
    assert lake.read("impressions").where(F.col("user_id") == FORGET).count() == 0
    assert lake.read("actions").where(F.col("impression_id").startswith("imp-007-")).count() == 0
    assert lake.read("quarantine").count() == 1
    # Everyone else is untouched.
    assert lake.read("impressions").count() == imps.count() - 15
    assert lake.read("actions").count() == 20 * 5 - 5
    # No referenced or unreferenced data file, and no log entry, mentions the user any more.
    assert cells_mentioning(Path(lake.root), FORGET) == []
    assert cells_mentioning(Path(lake.root), "imp-007-001") == []
    logged = lake.read(PRIVACY_LOG_TABLE).first()
    assert logged.user_id_sha256 == [user_hash(FORGET)]
    assert logged.rows_removed["impressions"] == 15


def test_forget_user_with_retention_keeps_files_until_it_passes(spark, lake, config):
    seed_lake(spark, lake)
    config.privacy.vacuum_retention_hours = 24
    report = forget_users(lake, [FORGET], config.privacy, "req-2")
    assert lake.read("impressions").where(F.col("user_id") == FORGET).count() == 0
    assert report.files_vacuumed == {"impressions": 0, "actions": 0, "quarantine": 0}
    assert report.files_deleted_by > datetime.now(UTC) + timedelta(hours=23)
    # Old versions still hold the rows until the retention passes: time travel shows them.
    assert lake.read("impressions", version=0).where(F.col("user_id") == FORGET).count() > 0


def test_compaction_keeps_rows_and_merges_small_files(spark, lake, config):
    imps = impressions(spark)
    for i in range(6):
        lake.write(
            "impressions", imps.where(F.abs(F.hash("impression_id")) % 6 == i), partition_by=["dt"]
        )
    before = sorted(lake.read("impressions").collect())
    files_before = len(DeltaTable(lake.uri("impressions")).file_uris())
    config.maintenance.min_files = 2
    result = compact_table(lake, "impressions", config.maintenance)
    assert result.files_before > result.files_after == result.partitions
    assert len(DeltaTable(lake.uri("impressions")).file_uris()) < files_before
    assert sorted(lake.read("impressions").collect()) == before
    assert lake.last_commit("impressions").metadata["freshlake.operation"] == "compact"
    last_log = sorted((Path(lake.uri("impressions")) / "_delta_log").glob("*.json"))[-1]
    assert '"dataChange":true' not in last_log.read_text(), "compaction is not a data change"
    removed = vacuum_table(lake, "impressions", 0)
    assert len(removed) == result.files_before
    assert sorted(lake.read("impressions").collect()) == before


@pytest.mark.slow
def test_compaction_is_safe_while_another_writer_appends(spark, lake, config):
    imps = impressions(spark)
    lake.write("impressions", imps.limit(0), partition_by=["dt"])
    batches = [imps.where(F.abs(F.hash("impression_id")) % 8 == i) for i in range(8)]
    errors: list[BaseException] = []

    def append_all() -> None:
        try:
            for batch_id, batch in enumerate(batches):
                lake.write("impressions", batch, app_id="joiner", app_version=batch_id)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    writer = threading.Thread(target=append_all)
    writer.start()
    config.maintenance.min_files = 2
    compactions = 0
    while writer.is_alive():
        compactions += compact_table(lake, "impressions", config.maintenance).partitions or 0
        vacuum_table(lake, "impressions", 0)
    writer.join()
    assert errors == []
    assert sorted(lake.read("impressions").collect()) == sorted(imps.collect())
    assert lake.transaction_version("impressions", "joiner") == 7


def test_delete_and_compaction_under_escaped_partition_values(spark, lake, config):
    rows = [("a/b c", 1), ("a/b c", 2), ("50%=x", 3), (None, 4)]
    for _ in range(2):  # two appends: two files per partition, the row to delete in two
        lake.write(
            "odd", spark.createDataFrame(rows, "region string, n int"), partition_by=["region"]
        )
    result = lake.delete("odd", "n = 2 AND region = 'a/b c'")
    assert (result.rows_removed, result.files_rewritten) == (2, 2)
    expected = sorted((region or "", n) for region, n in rows * 2 if n != 2)
    assert sorted((r.region or "", r.n) for r in lake.read("odd").collect()) == expected

    config.maintenance.min_files = 2
    compacted = compact_table(lake, "odd", config.maintenance)
    # The delete's rewrite may have left "a/b c" one file already; the others have two each.
    assert compacted.files_after == compacted.partitions >= 2
    assert len(DeltaTable(lake.uri("odd")).file_uris()) == 3  # one per partition
    assert sorted((r.region or "", r.n) for r in lake.read("odd").collect()) == expected


def test_log_paths_of_files_spark_read():
    log = ["dt=2026-01-01/part-0.parquet", "dt=2026-01-02/part-0.parquet",
           "region=a%252Fb%20c/part-1.parquet", "part-0.parquet"]  # fmt: skip
    spark_names = [
        "file:///lake/t/dt=2026-01-02/part-0.parquet",
        "file:///lake/t/region=a%252Fb%20c/part-1.parquet",
        "s3a://bucket/t/part-0.parquet",
    ]
    assert log_paths_of(spark_names, log) == {
        spark_names[0]: "dt=2026-01-02/part-0.parquet",
        spark_names[1]: "region=a%252Fb%20c/part-1.parquet",
        spark_names[2]: "part-0.parquet",
    }
    with pytest.raises(ValueError, match="not a data file"):
        log_paths_of(["file:///lake/t/dt=2026-01-03/part-9.parquet"], log)
