"""A small joiner run: one pass over a few events, and the state a restart would resume with."""

from __future__ import annotations

from datetime import datetime, timedelta

from freshlake.streaming.join_plan import JOINER_QUERY
from freshlake.streaming.join_sink import FRESH_ACTIONS, FRESH_EXAMPLES, JoinerSink, restore_state
from freshlake.streaming.joiner import joiner_stream
from freshlake.streaming.metrics import MetricsRecorder, read_metrics_log
from freshlake.streaming.producer import EventLogger, ensure_topics
from freshlake.streaming.queries import metrics_log_path, prepare_session, start_query
from tests.streaming_fixtures import T0, action, impression


def at(minutes: float) -> datetime:
    """T0 + minutes, naive UTC as Spark's collect returns it."""
    return (T0 + timedelta(minutes=minutes)).replace(tzinfo=None)


def log_events(config) -> None:
    """Four impressions served at minute 8, and one at 70 that moves the watermark to 69, past
    their windows (68) but not past what the sink keeps (69 - 62 = minute 7)."""
    ensure_topics(config.kafka, config.kafka.topics.values())
    logger = EventLogger(config.kafka)
    for imp in [
        impression("clicked", 8),
        impression("twice", 8),
        impression("none", 8),
        impression("dup", 8),
        impression("dup", 8),  # an exact re-send
        impression("heartbeat", 70),
    ]:
        logger.log_impression(imp)
    for act in [
        action("clicked", "click", 9),
        action("clicked", "like", 10),
        action("clicked", "like", 10),  # a re-sent like
        action("twice", "click", 10),
        action("twice", "click", 9),  # the earlier click decides
        action("heartbeat", "like", 71),
    ]:
        logger.log_action(act)
    logger.flush()


def test_one_pass_writes_each_impression_once_and_restores_the_same_state(spark, join_config, lake):
    log_events(join_config)
    prepare_session(spark, join_config)
    metrics_log = metrics_log_path(join_config, JOINER_QUERY)
    recorder = MetricsRecorder(JOINER_QUERY, metrics_log, lake)
    sink = JoinerSink(join_config, lake, recorder)
    stream = joiner_stream(spark, join_config, lake)
    query = start_query(stream, JOINER_QUERY, join_config, sink, available_now=True)
    query.awaitTermination(300)
    assert query.exception() is None
    recorder.drain(query, final=True)

    rows = {r.impression_id: r for r in lake.read(FRESH_EXAMPLES).collect()}
    assert {k: (r.label, r.label_like) for k, r in rows.items()} == {
        "clicked": (1, 1),
        "twice": (1, 0),
        "none": (0, 0),
        "dup": (0, 0),
    }
    assert rows["twice"].first_action_at == at(9)
    likes = lake.read(FRESH_ACTIONS).select("impression_id", "action", "action_at").collect()
    assert sorted(tuple(r) for r in likes) == [
        ("clicked", "like", at(10)),
        ("heartbeat", "like", at(71)),
    ]
    metrics = read_metrics_log(metrics_log)
    # the second copy of "dup", twice's later click, clicked's re-sent like
    assert sum(m["duplicates_dropped"] for m in metrics) == 3
    assert sum(m["positives"] for m in metrics) == 2

    state = sink.state
    assert state.watermark == at(69)
    assert set(state.written) == {"clicked", "twice", "none", "dup"}
    assert set(state.positives) == {"clicked", "twice"}
    assert restore_state(lake, join_config, state.watermark) == state
