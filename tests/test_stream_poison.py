"""Poison messages in running streams: the bronze ingest and the joiner keep running.

Hostile payloads (bytes that are not UTF-8, overflowing numbers, duplicate keys, deep nesting,
JSON that is not an object, empty and NULL messages) go into both topics before and while the
bronze queries of both kinds and the joiner run. Each lands in `quarantine` once with its topic,
partition and offset; every valid record is written exactly once; the joiner ignores them.
"""

from __future__ import annotations

import json
import time

import pytest

from freshlake.streaming.bronze import start_bronze_ingest
from freshlake.streaming.join_sink import FRESH_EXAMPLES
from freshlake.streaming.joiner import start_joiner
from freshlake.streaming.producer import EventLogger, ensure_topics, to_json
from tests.streaming_fixtures import action, impression

GOOD_IMPRESSIONS = [impression(f"good-{i}", i) for i in range(6)]
GOOD_ACTIONS = [action("good-1", "click", 3), action("good-4", "click", 7)]
BOM_IMPRESSION = "\ufeff".encode() + to_json(impression("bom-ok", 2))
OVERFLOW = to_json(impression("p-position", 1))[:-1] + b', "position": 1e400}'
POISON_IMPRESSIONS = [
    b"\xff\xfe{not utf-8",
    b"{not json",
    to_json({**impression("p-text", 1), "position": "1e400"}),
    OVERFLOW,
    b"[1, 2]",
    b"null",
    b"",
    None,  # a tombstone
    b'{"impression_id": "p-dup", "impression_id": "p-dup2", "user_id": "u", "item_id": "i"}',
    b'{"deep": ' + b"[" * 5000 + b"]" * 5000 + b"}",
]
POISON_ACTIONS = [
    b"\x00\x01\x02",
    to_json({**action("good-2", "click", 4), "action_at": "1e400"}),
    to_json(action("good-3", "click", 4))[:-1] + b', "value": NaN}',
    b'{"impression_id": "good-5", "action": "click", "action_at": 1e400}',
    b"42",
    None,
]


def _wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def _send_poison(logger: EventLogger, impressions: list, actions: list) -> None:
    for payload in impressions:
        logger.send("impressions", payload)
    for payload in actions:
        logger.send("actions", payload)


def _count(lake, table: str) -> int:
    return lake.read(table).count() if lake.exists(table) else 0


@pytest.mark.slow
def test_poison_messages_leave_bronze_and_joiner_running(spark, join_config, lake):
    kafka = join_config.kafka
    ensure_topics(kafka, kafka.topics.values())
    logger = EventLogger(kafka)
    for record in GOOD_IMPRESSIONS:
        logger.log_impression(record)
    logger.send("impressions", BOM_IMPRESSION)  # a byte order mark is not a reason to reject
    for record in GOOD_ACTIONS:
        logger.log_action(record)
    _send_poison(logger, POISON_IMPRESSIONS[:5], POISON_ACTIONS[:3])
    logger.flush()

    queries = [
        start_bronze_ingest(spark, join_config, lake, "impressions"),
        start_bronze_ingest(spark, join_config, lake, "actions"),
    ]
    try:
        _wait_for(lambda: _count(lake, "quarantine") >= 8, timeout=120)
        queries.append(start_joiner(spark, join_config, lake))  # reads the topics from the start
        # While they run: the rest of the poison, then events 3 hours later that move both
        # watermarks past every attribution window above.
        _send_poison(logger, POISON_IMPRESSIONS[5:], POISON_ACTIONS[3:])
        logger.log_impression(impression("heartbeat", 180))
        logger.log_action(action("heartbeat", "like", 181))
        logger.flush()
        poison = len(POISON_IMPRESSIONS) + len(POISON_ACTIONS)
        _wait_for(lambda: _count(lake, "quarantine") == poison, timeout=90)
        _wait_for(lambda: _count(lake, FRESH_EXAMPLES) >= 7, timeout=90)
        for query in queries:
            assert query.isActive and query.exception() is None, query.name
    finally:
        for query in queries:
            query.stop()

    quarantined = lake.read("quarantine").collect()
    assert len(quarantined) == poison
    coordinates = {(r.topic, r.partition, r.offset) for r in quarantined}
    assert len(coordinates) == poison, "each message quarantined once, with its own offset"
    assert {r.topic for r in quarantined} == set(kafka.topics.values())
    assert all(r.partition is not None and r.offset is not None for r in quarantined)
    by_topic = {kind: [r for r in quarantined if r.topic == t] for kind, t in kafka.topics.items()}
    assert len(by_topic["impressions"]) == len(POISON_IMPRESSIONS)
    assert len(by_topic["actions"]) == len(POISON_ACTIONS)
    assert {r.reason for r in quarantined} >= {"malformed_row", "malformed_json", "bad_type"}
    assert json.loads(next(r.raw for r in quarantined if r.reason == "bad_timestamp"))

    valid_ids = [r.impression_id for r in lake.read("impressions").collect()]
    expected = sorted([*(r["impression_id"] for r in GOOD_IMPRESSIONS), "bom-ok", "heartbeat"])
    assert sorted(valid_ids) == expected, "every valid impression written exactly once"
    assert lake.read("actions").count() == len(GOOD_ACTIONS) + 1

    examples = lake.read(FRESH_EXAMPLES).collect()
    ids = [r.impression_id for r in examples]
    assert len(ids) == len(set(ids)), "an impression was joined twice"
    matured = {r["impression_id"] for r in GOOD_IMPRESSIONS} | {"bom-ok"}
    assert set(ids) == matured
    assert {r.impression_id for r in examples if r.label == 1} == {"good-1", "good-4"}
