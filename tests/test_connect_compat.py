"""What keeps freshlake runnable through Spark Connect (fast): no module but the compatibility
one reaches the JVM, and what a foreachBatch sink carries pickles into a server process."""

from __future__ import annotations

import pickle
import re
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import SparkSession

from freshlake.spark_compat import data_source_available, is_connect, session_key
from freshlake.streaming.metrics import BatchReport, MetricsRecorder, ReportSpool

REPO = Path(__file__).resolve().parent.parent
PACKAGE_FOLDERS = ["freshlake", "features", "jobs", "streaming", "training"]
COMPAT_MODULE = REPO / "freshlake" / "spark_compat.py"
# What a Spark Connect session does not have: the JVM gateway, the SparkContext, RDDs.
JVM_ONLY = re.compile(r"\b(sparkContext|SparkContext|_jvm|_jsc|_jsparkSession|_jdf)\b|\.rdd\b")


def test_only_the_compatibility_module_reaches_the_jvm():
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for folder in PACKAGE_FOLDERS
        for path in sorted((REPO / folder).rglob("*.py"))
        if path != COMPAT_MODULE
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if JVM_ONLY.search(line)
    ]
    assert not offenders, "JVM-only Spark APIs outside freshlake/spark_compat.py:\n" + "\n".join(
        offenders
    )


def test_a_classic_session_is_told_apart_and_finds_data_sources_by_name(spark):
    assert not is_connect(spark)
    assert session_key(SparkSession.getActiveSession()) == session_key(spark)
    assert session_key(spark.newSession()) != session_key(spark)
    assert data_source_available(spark, "parquet")
    assert not data_source_available(spark, "no-such-format")
    assert not data_source_available(spark, "kafka"), "no spark-sql-kafka jar in the wheel"


def test_a_lake_pickles_into_one_on_the_active_session_with_the_same_root(lake, spark):
    copy = pickle.loads(pickle.dumps(lake))
    assert copy.root == lake.root and copy.spark is spark
    assert type(copy.engine) is type(lake.engine)


def test_a_recorder_in_another_process_reports_through_its_spool(tmp_path):
    recorder = MetricsRecorder("q", tmp_path / "q-metrics.jsonl")
    ReportSpool(recorder.spool_path).report(BatchReport(0, datetime.now(UTC), {"old": 1}))
    recorder = MetricsRecorder("q", tmp_path / "q-metrics.jsonl")  # a new run skips old reports
    remote = pickle.loads(pickle.dumps(recorder))
    assert isinstance(remote, ReportSpool)
    sent = BatchReport(3, datetime.now(UTC), {"t": 2}, duplicates_dropped=1, latencies_s=[0.5])
    remote.report(sent)
    recorder._read_spool()
    assert recorder._reports == {3: sent}
