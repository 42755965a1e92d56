"""The local Tansu broker: lifecycle, and the offsets freshlake finds despite its quirks."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from freshlake.config import BrokerConfig
from freshlake.streaming.broker import LocalBroker
from freshlake.streaming.offsets import (
    RecordsLostError,
    consumer_config,
    end_offsets,
    topic_partitions,
)
from tests.streaming_fixtures import create_topic, free_port


def test_start_status_stop(tmp_path):
    broker = LocalBroker(BrokerConfig(port=free_port(), state_dir=str(tmp_path / "b")))
    pid = broker.start()
    try:
        status = broker.status()
        assert status.running and status.ready and status.pid == pid
        assert broker.pid_file.read_text() == str(pid)
        assert "127.0.0.1" in broker.log_file.read_text()
        assert broker.start() == pid  # already running: no second broker
    finally:
        assert broker.stop()
    assert not broker.status().running
    assert not broker.pid_file.exists()
    assert broker.stop() is False


def test_listens_on_loopback_only(kafka_broker):
    assert kafka_broker.bootstrap_servers.startswith("127.0.0.1:")
    command = " ".join(kafka_broker.command())
    assert "0.0.0.0" not in command
    assert f"tcp://127.0.0.1:{kafka_broker.port}" in command


@pytest.fixture
def topic(kafka_broker):
    name = f"offsets-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_broker.bootstrap_servers, name, partitions=2)
    return name


def _produce(servers: str, topic: str, partition: int, count: int, one_batch: bool) -> None:
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 50 if one_batch else 0})
    for i in range(count):
        producer.produce(topic, value=f"v{i}".encode(), partition=partition)
        if not one_batch:
            producer.flush()
    producer.flush()


def test_end_offsets_fetch_to_eof_where_the_watermark_is_wrong(kafka_broker, topic):
    servers = kafka_broker.bootstrap_servers
    _produce(servers, topic, partition=0, count=7, one_batch=False)
    _produce(servers, topic, partition=1, count=500, one_batch=True)
    consumer = Consumer(consumer_config(servers))
    try:
        pairs = topic_partitions(consumer, [topic])
        ends = end_offsets(consumer, pairs)
        assert ends == {topic: {"0": 7, "1": 500}}
        # Tansu's quirk (documented in streaming.broker): a 500-record batch reports base + 1.
        _, reported = consumer.get_watermark_offsets(TopicPartition(topic, 1), timeout=5)
        assert reported < 500
        # Known offsets are a floor: only newer records are fetched.
        _produce(servers, topic, partition=1, count=3, one_batch=False)
        assert end_offsets(consumer, pairs, known=ends)[topic] == {"0": 7, "1": 503}
    finally:
        consumer.close()


def test_a_checkpoint_past_the_partition_end_is_a_clear_error(kafka_broker, topic):
    # What a memory-backed broker restarted under an old checkpoint looks like.
    servers = kafka_broker.bootstrap_servers
    _produce(servers, topic, partition=0, count=5, one_batch=False)
    consumer = Consumer(consumer_config(servers))
    try:
        pairs = topic_partitions(consumer, [topic])
        known = {topic: {"0": 40, "1": 0}}
        with pytest.raises(RecordsLostError, match=rf"{topic}/0 ends at 5, before offset 40"):
            end_offsets(consumer, pairs, known=known, timeout=10)
    finally:
        consumer.close()


def test_offsets_for_times_is_not_usable(kafka_broker, topic):
    """Documents why freshlake never looks offsets up by time on the local broker."""
    _produce(kafka_broker.bootstrap_servers, topic, partition=0, count=5, one_batch=False)
    consumer = Consumer(consumer_config(kafka_broker.bootstrap_servers))
    try:
        future_ms = int(time.time() * 1000) + 3_600_000
        found = consumer.offsets_for_times([TopicPartition(topic, 0, future_ms)], timeout=5)
        # Kafka answers -1 (no record that late); this broker answers the first offset.
        assert found[0].offset == 0
    finally:
        consumer.close()
