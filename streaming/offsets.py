"""Kafka partition offsets found without trusting the broker's high watermark.

The local Tansu broker reports the high watermark as the last record batch's base offset + 1
(docs/design.md section 7.4, `streaming.broker`). A real Kafka broker reports it right. Both answer
fetches right, so `end_offsets` seeks to a lower bound of the end (the offset already known,
or just below the reported high watermark, which is never past the true end on either broker)
and fetches to partition EOF; on Kafka that reads one record per partition, on Tansu at most
the last record batch.

Offsets are `{topic: {partition (str): offset}}`, the JSON layout of Spark's `kafka` source.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

Offsets = dict[str, dict[str, int]]

# Spark's `startingOffsets` JSON sentinels.
EARLIEST = -2
LATEST = -1


def consumer_config(bootstrap_servers: str, client: Mapping[str, str] | None = None) -> dict:
    """A confluent-kafka consumer config for offset lookups and assigned reads (no group join).

    `client` (kafka.client: security.protocol, sasl.*, ssl.*, ...) is passed unchanged.
    """
    return {
        "bootstrap.servers": bootstrap_servers,
        # assign() never joins the group; librdkafka still wants an id.
        "group.id": f"freshlake-reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
        "log_level": 3,
        # At a partition's end the broker holds a fetch this long waiting for data (default
        # 500 ms): offset lookups fetch to EOF, so this is their latency.
        "fetch.wait.max.ms": 10,
        **dict(client or {}),
    }


def topic_partitions(consumer: Consumer, topics: Iterable[str], timeout: float = 10.0) -> list:
    """(topic, partition) pairs of `topics`; raises if a topic does not exist."""
    metadata = consumer.list_topics(timeout=timeout)
    pairs = []
    for topic in topics:
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise KafkaException(f"topic {topic!r} not found on the broker")
        pairs.extend((topic, p) for p in sorted(info.partitions))
    return pairs


class RecordsLostError(RuntimeError):
    """A partition ends before an offset already read: its records are gone."""


def earliest_offsets(consumer: Consumer, pairs: list, timeout: float = 10.0) -> Offsets:
    """The first offset of each partition (the low watermark, which Tansu reports right)."""
    offsets: Offsets = {}
    for topic, partition in pairs:
        low, _ = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        offsets.setdefault(topic, {})[str(partition)] = max(low, 0)
    return offsets


def end_offsets(
    consumer: Consumer,
    pairs: list,
    known: Offsets | None = None,
    timeout: float = 30.0,
) -> Offsets:
    """The true end (next offset to be written) of each partition, by fetching to EOF.

    The fetch starts at the last record the broker reports (Tansu's watermark is the base offset
    of its last batch + 1), so it reads at most one batch. `known` holds offsets that must be at
    or below the end (the last batch's end, from a checkpoint): a partition that ends before
    its known offset means the topic was recreated or the broker lost its records, and raises
    (as Spark's Kafka source does with failOnDataLoss) instead of waiting for records that will
    never come.
    """
    known = known or {}
    starts: dict[tuple[str, int], int] = {}
    for topic, partition in pairs:
        _, reported = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout, cached=False
        )
        starts[(topic, partition)] = max(reported - 1, 0)
    ends = _fetch_to_eof(consumer, starts, known, timeout)
    lost = [
        f"{topic}/{partition} ends at {end}, before offset {known[topic][partition]}"
        for topic, parts in ends.items()
        for partition, end in parts.items()
        if end < known.get(topic, {}).get(partition, 0)
    ]
    if lost:
        raise RecordsLostError(
            "records the checkpoint has read past are gone (topic recreated, or a broker that "
            f"keeps no data restarted): {'; '.join(lost)}. Start the query from a new checkpoint."
        )
    return ends


def _fetch_to_eof(
    consumer: Consumer,
    starts: dict[tuple[str, int], int],
    known: Offsets,
    timeout: float,
) -> Offsets:
    ends: Offsets = {}
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in starts.items()])
    pending = set(starts)
    retried: set[tuple[str, int]] = set()
    deadline = time.monotonic() + timeout
    try:
        while pending:
            if time.monotonic() > deadline:
                raise KafkaException(f"no partition EOF within {timeout}s for {sorted(pending)}")
            # consume() returns after `timeout` unless it filled `num_messages`: poll briefly.
            for message in consumer.consume(num_messages=10_000, timeout=0.02):
                key = (message.topic(), message.partition())
                if key not in pending:
                    continue
                error = message.error()
                if error is None:
                    continue
                if error.code() == KafkaError._PARTITION_EOF:
                    ends.setdefault(key[0], {})[str(key[1])] = message.offset()
                    pending.discard(key)
                elif key not in retried:
                    # The reported watermark was past the end: scan from the known offset.
                    retried.add(key)
                    floor = known.get(key[0], {}).get(str(key[1]), 0)
                    consumer.assign(
                        [
                            TopicPartition(t, p, floor if (t, p) == key else starts[(t, p)])
                            for (t, p) in pending
                        ]
                    )
                else:
                    raise KafkaException(error)
    finally:
        consumer.unassign()
    return ends


def parse_starting_offsets(spec: str) -> Offsets | str:
    """`earliest`, `latest`, or Spark's JSON `{"topic": {"0": 23, "1": -2}}` (-2 earliest, -1 latest)."""
    import json

    text = spec.strip()
    if text.lower() in ("earliest", "latest"):
        return text.lower()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"startingOffsets must be earliest, latest or JSON, not {spec!r}") from exc
    if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
        raise ValueError(f'startingOffsets JSON must look like {{"topic": {{"0": 23}}}}: {spec!r}')
    return {t: {str(p): int(o) for p, o in parts.items()} for t, parts in parsed.items()}
