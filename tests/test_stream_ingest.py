"""Bronze ingest: Kafka -> impressions/actions Delta tables, bad records to quarantine."""

from __future__ import annotations

import json
import time

from freshlake.streaming.bronze import start_bronze_ingest
from freshlake.streaming.metrics import MetricsRecorder, read_metrics_log
from freshlake.streaming.producer import EventLogger, ensure_topics
from freshlake.streaming.queries import metrics_log_path

GOOD = {
    "impression_id": "i1",
    "user_id": "u1",
    "item_id": "a1",
    "served_at": "2026-01-01T00:00:00Z",
    "features": {"device": "ios"},
}
BAD = [b"{not json", json.dumps({**GOOD, "user_id": None}).encode(), b'{"impression_id": "x"}']


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_bronze_ingest_quarantines_bad_records_and_keeps_running(spark, stream_config, lake):
    kafka = stream_config.kafka
    ensure_topics(kafka, kafka.topics.values())
    logger = EventLogger(kafka)
    for i in range(20):
        logger.log_impression({**GOOD, "impression_id": f"i{i}"})
    for payload in BAD:
        logger.send("impressions", payload)
    logger.flush()

    recorder = MetricsRecorder(
        "bronze-impressions", metrics_log_path(stream_config, "bronze-impressions"), lake
    )
    query = start_bronze_ingest(spark, stream_config, lake, "impressions", recorder)
    try:
        _wait_for(lambda: lake.exists("impressions") and lake.exists("quarantine"))
        # The stream is still running: a second wave, good and bad, lands too.
        for i in range(20, 25):
            logger.log_impression({**GOOD, "impression_id": f"i{i}"})
        logger.send("impressions", b"[1, 2]")
        logger.flush()
        _wait_for(lambda: lake.read("impressions").count() == 25)
        _wait_for(lambda: lake.read("quarantine").count() == 4)
        assert query.isActive and query.exception() is None
    finally:
        query.stop()
    recorder.drain(query, final=True)

    impressions = lake.read("impressions")
    assert sorted(r.impression_id for r in impressions.collect()) == sorted(
        f"i{i}" for i in range(25)
    )
    quarantined = lake.read("quarantine").collect()
    assert {r.topic for r in quarantined} == {kafka.topics["impressions"]}
    assert {r.raw.encode() for r in quarantined} == {*BAD, b"[1, 2]"}
    assert sorted(r.reason for r in quarantined) == sorted(
        ["malformed_json", "missing_field", "missing_field", "malformed_json"]
    )
    assert all(r.partition is not None and r.offset is not None for r in quarantined)

    metrics = read_metrics_log(metrics_log_path(stream_config, "bronze-impressions"))
    assert sum(m["rows_written"].get("impressions", 0) for m in metrics) == 25
    assert sum(m["rows_written"].get("quarantine", 0) for m in metrics) == 4
    assert lake.read("stream_metrics").count() == len(metrics)


def test_replayed_batch_writes_nothing_twice(spark, stream_config, lake):
    """A restart whose checkpoint lost the last commit marker replays that batch: skipped."""
    from pathlib import Path

    from freshlake.streaming.queries import checkpoint_dir

    kafka = stream_config.kafka
    ensure_topics(kafka, kafka.topics.values())
    logger = EventLogger(kafka)
    for i in range(10):
        logger.log_impression({**GOOD, "impression_id": f"r{i}"})
    logger.flush()
    query = start_bronze_ingest(spark, stream_config, lake, "impressions", available_now=True)
    query.awaitTermination(180)
    version = lake.version("impressions")
    # Simulate a crash after the Delta commit but before Spark's commit marker.
    commits = Path(checkpoint_dir(stream_config, "bronze-impressions"), "commits")
    last = max(commits.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1)
    last.unlink()
    (commits / f".{last.name}.crc").unlink(missing_ok=True)
    query = start_bronze_ingest(spark, stream_config, lake, "impressions", available_now=True)
    query.awaitTermination(180)
    assert lake.version("impressions") == version
    assert lake.read("impressions").count() == 10
