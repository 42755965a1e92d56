"""Batch/stream parity: the joiner and the batch builder make the same examples from the same logs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from freshlake.config import GenerateConfig
from freshlake.streaming.bronze import start_bronze_ingest
from freshlake.streaming.joiner import start_joiner
from freshlake.streaming.metrics import MetricsRecorder
from freshlake.streaming.parity import compare
from freshlake.streaming.producer import EventLogger, ensure_topics
from freshlake.streaming.queries import metrics_log_path
from freshlake.streaming.replay import load_logs, replay
from freshlake.synth import generate_logs


@pytest.mark.slow
def test_parity_finds_no_difference(spark, stream_config, lake, tmp_path):
    from freshlake.batch.training_set import build_training_set
    from freshlake.batch.window import TimeWindow
    from freshlake.runs import JobRun

    config = stream_config
    logs = tmp_path / "logs"
    settings = GenerateConfig(impressions=3000, users=500, items=40, days=2, seed=5, workers=1)
    generate_logs(settings, logs, window_seconds=config.labels.attribution_window_seconds)
    ensure_topics(config.kafka, config.kafka.topics.values())
    logger = EventLogger(config.kafka)
    impressions, actions = load_logs(logs)
    replay(logger, impressions, actions, rate=50_000)
    beat = datetime(2026, 1, 3, 6, tzinfo=UTC)  # moves the stream's watermarks past day 2
    logger.log_impression(
        {"impression_id": "hb", "user_id": "u", "item_id": "i", "served_at": beat}
    )
    logger.log_action({"impression_id": "hb", "action": "like", "action_at": beat})
    logger.flush()

    for kind in ("impressions", "actions"):
        start_bronze_ingest(spark, config, lake, kind, available_now=True).awaitTermination(600)
    window = TimeWindow(date(2026, 1, 1), date(2026, 1, 3))
    with JobRun("build-training-set", config, lake) as run:
        build_training_set(lake, config, window, run)

    recorder = MetricsRecorder("joiner", metrics_log_path(config, "joiner"), lake)
    query = start_joiner(spark, config, lake, recorder, available_now=True)
    query.awaitTermination(900)
    assert query.exception() is None
    recorder.drain(query, final=True)

    report = compare(lake, config)
    assert report.differences == 0, report.as_json()
    assert report.compared_rows > 100
    assert datetime.fromisoformat(report.until) > datetime(2026, 1, 3, tzinfo=UTC) - timedelta(
        hours=1
    )
    # Rare-item upsampling and click upsampling were both in play.
    strata = {r.stratum for r in lake.read("fresh_examples").select("stratum").distinct().collect()}
    assert {"positive", "negative", "negative_rare"} <= strata
