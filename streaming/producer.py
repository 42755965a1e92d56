"""The serving side's logger: impressions and actions as JSON messages on Kafka topics.

A serving system calls `EventLogger.log_impression(record)` when it shows an item and
`log_action(record)` on user feedback (records as in docs/design.md section 2.1; datetimes become
ISO-8601 UTC text). Messages are keyed by `impression_id`. Client settings (`kafka.client`:
security.protocol, sasl.*, ssl.*, ...) are passed to confluent-kafka unchanged.

    with EventLogger(config.kafka) as logger:
        logger.log_impression({"impression_id": "i1", "user_id": "u1", "item_id": "a7",
                               "served_at": datetime.now(UTC)})
        logger.log_action({"impression_id": "i1", "action": "click", "action_at": ...})
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from confluent_kafka import KafkaException, Producer

from freshlake.config import KafkaConfig

# Producer defaults the config's `kafka.client` may override. linger.ms 100 batches ~100 ms of
# events per partition: at 2,000 events/s with 5 ms, the local broker (Tansu's memory engine)
# stores 16x more batches and its fetch cost grows with their number until offset lookups stall
# (bench/bench_streaming.py); 100 ms adds at most 0.1 s before an event is on the broker.
PRODUCER_DEFAULTS = {
    "linger.ms": 100,
    "enable.idempotence": True,
    "acks": "all",
    "queue.buffering.max.messages": 1_000_000,
}


def producer_config(kafka: KafkaConfig) -> dict[str, Any]:
    """confluent-kafka producer settings: defaults, then `kafka.client` unchanged."""
    return {**PRODUCER_DEFAULTS, "bootstrap.servers": kafka.bootstrap_servers, **kafka.client}


def ensure_topics(kafka: KafkaConfig, topics: Iterable[str], partitions: int = 2) -> None:
    """Create the topics that do not exist yet (`partitions` each)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers, **kafka.client})
    existing = set(admin.list_topics(timeout=10).topics)
    missing = [NewTopic(t, num_partitions=partitions) for t in topics if t not in existing]
    for topic, future in admin.create_topics(missing).items() if missing else []:
        try:
            future.result(timeout=10)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create topic {topic}: {exc}") from exc


def to_json(record: Mapping[str, Any]) -> bytes:
    """A record as compact JSON; datetimes as ISO-8601 UTC text with a `Z`."""
    return json.dumps(record, separators=(",", ":"), default=_json_value).encode()


def utc_text(value: datetime) -> str:
    """A datetime as the ISO-8601 UTC text `to_json` writes (naive values are UTC)."""
    moment = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class EventLogger:
    """Writes impressions and actions to their topics (config `kafka.topics`)."""

    def __init__(self, kafka: KafkaConfig, producer: Producer | None = None):
        self.topics = kafka.topics
        self.producer = producer or Producer(producer_config(kafka))
        self.errors: list[str] = []
        self.sent = 0

    def _on_delivery(self, error, _message) -> None:
        if error is not None:
            self.errors.append(str(error))

    def send(self, kind: str, payload: bytes, key: str | bytes | None = None) -> None:
        """Send one raw payload to the topic of `kind` (impressions | actions)."""
        topic = self.topics[kind]
        while True:
            try:
                self.producer.produce(topic, value=payload, key=key, on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(0.05)
        self.producer.poll(0)
        self.sent += 1

    def log_impression(self, record: Mapping[str, Any]) -> None:
        self.send("impressions", to_json(record), _key(record))

    def log_action(self, record: Mapping[str, Any]) -> None:
        self.send("actions", to_json(record), _key(record))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every message to be delivered; raise if any failed."""
        remaining = self.producer.flush(timeout)
        if remaining:
            raise RuntimeError(f"{remaining} messages not delivered within {timeout}s")
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} messages failed, first: {self.errors[0]}")

    def __enter__(self) -> EventLogger:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.flush()


def _key(record: Mapping[str, Any]) -> bytes | None:
    value = record.get("impression_id")
    return str(value).encode() if value is not None else None
