"""The online joiner: one row per matured impression with the right labels, exactly once."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from freshlake.streaming.join_sink import FRESH_EXAMPLES
from freshlake.streaming.joiner import start_joiner
from freshlake.streaming.metrics import MetricsRecorder, read_metrics_log
from freshlake.streaming.producer import EventLogger, ensure_topics
from freshlake.streaming.queries import metrics_log_path
from tests.streaming_fixtures import T0, action, impression


def run_joiner(spark, config, lake) -> None:
    recorder = MetricsRecorder("joiner", metrics_log_path(config, "joiner"), lake)
    query = start_joiner(spark, config, lake, recorder, available_now=True)
    query.awaitTermination(300)
    assert query.exception() is None
    recorder.drain(query, final=True)


@pytest.mark.slow
def test_labels_duplicates_late_clicks_and_upgrades(spark, join_config, lake):
    kafka = join_config.kafka
    ensure_topics(kafka, kafka.topics.values())
    logger = EventLogger(kafka)
    for imp in [
        impression("clicked", 0),
        impression("clicked-twice", 1),
        impression("late-click", 2),
        impression("no-click", 3),
        impression("liked-later", 4),
        impression("dup", 5),
        impression("dup", 5),  # an exact re-send
    ]:
        logger.log_impression(imp)
    for act in [
        action("clicked", "click", 10),
        action("clicked-twice", "click", 2),
        action("clicked-twice", "click", 3),
        action("clicked-twice", "click", 3),  # a re-sent action
        action("late-click", "click", 2 + 61),  # after the 60-minute window
        action("liked-later", "click", 5),
    ]:
        logger.log_action(act)
    logger.flush()
    run_joiner(spark, join_config, lake)
    first = {r.impression_id: r for r in lake.read(FRESH_EXAMPLES).collect()}
    assert {k: r.label for k, r in first.items()} == {
        "clicked": 1,
        "clicked-twice": 1,
        "liked-later": 1,
    }

    # Later: a repeated click, a like for a written positive, and an impression 3 hours later
    # that moves the watermark past every window above. A restart resumes from the checkpoint.
    logger.log_action(action("clicked", "click", 20))
    logger.log_action(action("liked-later", "like", 30))
    logger.log_action(action("liked-later", "like", 30))  # a re-sent like
    logger.log_impression(impression("heartbeat", 180))
    logger.log_action(action("heartbeat", "like", 181))  # both inputs' watermarks move on
    logger.flush()
    run_joiner(spark, join_config, lake)

    rows = lake.read(FRESH_EXAMPLES).collect()
    ids = [r.impression_id for r in rows]
    assert len(ids) == len(set(ids)), "an impression was written twice"
    got = {r.impression_id: r for r in rows}
    assert {k: r.label for k, r in got.items()} == {
        "clicked": 1,
        "clicked-twice": 1,
        "late-click": 0,
        "no-click": 0,
        "liked-later": 1,
        "dup": 0,
    }
    assert got["clicked-twice"].first_action_at.replace(tzinfo=UTC) == T0 + timedelta(minutes=2)
    assert got["liked-later"].label_like == 1 and got["clicked"].label_like == 0
    assert all(r.source == "stream" and r.sample_prob == 1.0 and r.weight == 1.0 for r in rows)
    assert got["no-click"].f_query and got["no-click"].split == "train"

    likes = lake.read("fresh_actions").where("impression_id = 'liked-later'").collect()
    assert [(r.action, r.action_at.replace(tzinfo=UTC)) for r in likes] == [
        ("like", T0 + timedelta(minutes=30))
    ]

    metrics = read_metrics_log(metrics_log_path(join_config, "joiner"))
    latencies = [m for m in metrics if m["positives"]]
    assert sum(m["positives"] for m in latencies) == 3
    # the second copy of "dup", clicked-twice's two later clicks, clicked's repeat, the re-sent like
    assert sum(m["duplicates_dropped"] for m in metrics) == 5
    assert any(m["watermark"] and m["watermark"] > "2026-01-01T14" for m in metrics)
    assert lake.read("stream_metrics").where("query = 'joiner'").count() == len(metrics)
