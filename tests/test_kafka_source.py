"""The Python Data Source Kafka source (`fl-kafka`) against the local broker."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import Producer

from freshlake.streaming.kafka_source import KAFKA_SCHEMA
from freshlake.streaming.source import KAFKA_COLUMNS, kafka_format, read_kafka_stream
from tests.streaming_fixtures import create_topic


@pytest.fixture
def topic(stream_config):
    name = f"src-{uuid.uuid4().hex[:8]}"
    create_topic(stream_config.kafka.bootstrap_servers, name, partitions=2)
    return name


def produce(servers: str, topic: str, count: int, start: int = 0) -> None:
    producer = Producer({"bootstrap.servers": servers, "linger.ms": 5})
    for i in range(start, start + count):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % 2)
    producer.flush()


def run_available_now(spark, config, topic, checkpoint, **options):
    """Run the source to the end with availableNow; return (rows, input rows per batch)."""
    collected: list = []
    batches: list[int] = []

    def collect(batch, _batch_id):
        rows = batch.collect()
        collected.extend(rows)
        batches.append(len(rows))

    query = (
        read_kafka_stream(spark, config, topic, **options)
        .writeStream.foreachBatch(collect)
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(120)
    return collected, [n for n in batches if n]


def test_reads_every_record_once_with_kafka_columns(spark, stream_config, topic, tmp_path):
    produce(stream_config.kafka.bootstrap_servers, topic, 101)
    assert kafka_format(spark, stream_config) == "fl-kafka"
    stream = read_kafka_stream(spark, stream_config, topic)
    assert stream.columns == KAFKA_COLUMNS
    assert [f.dataType for f in stream.schema] == [f.dataType for f in KAFKA_SCHEMA]

    rows, _ = run_available_now(spark, stream_config, topic, tmp_path / "cp")
    assert sorted(r.value.decode() for r in rows) == sorted(f"v{i}" for i in range(101))
    for row in rows:
        assert row.key.decode() == "k" + row.value.decode()[1:]
        assert row.topic == topic and row.partition == int(row.value.decode()[1:]) % 2
        assert row.timestamp is not None and row.timestampType == 0
    assert sorted(r.offset for r in rows if r.partition == 0) == list(range(51))

    # A restart from the checkpoint reads only what came later.
    produce(stream_config.kafka.bootstrap_servers, topic, 10, start=101)
    rows, _ = run_available_now(spark, stream_config, topic, tmp_path / "cp")
    assert sorted(r.value.decode() for r in rows) == sorted(f"v{i}" for i in range(101, 111))


def test_max_offsets_per_trigger_splits_batches(spark, stream_config, topic, tmp_path):
    produce(stream_config.kafka.bootstrap_servers, topic, 100)
    config = stream_config.model_copy(
        update={
            "streaming": stream_config.streaming.model_copy(update={"max_offsets_per_trigger": 30})
        }
    )
    rows, batches = run_available_now(spark, config, topic, tmp_path / "cp")
    assert len(rows) == 100 and len({(r.partition, r.offset) for r in rows}) == 100
    assert len(batches) >= 4 and max(batches) <= 30


def test_starting_offsets_json_and_latest(spark, stream_config, topic, tmp_path):
    produce(stream_config.kafka.bootstrap_servers, topic, 20)
    start = json.dumps({topic: {"0": 7, "1": -2}})
    rows, _ = run_available_now(spark, stream_config, topic, tmp_path / "a", starting_offsets=start)
    assert sorted((r.partition, r.offset) for r in rows) == [(0, o) for o in range(7, 10)] + [
        (1, o) for o in range(10)
    ]
    rows, _ = run_available_now(
        spark, stream_config, topic, tmp_path / "b", starting_offsets="latest"
    )
    assert rows == []


def test_pooled_consumer_reads_only_its_assigned_partition(stream_config, topic):
    """A consumer reused from the pool after reading one partition returns only records of the
    partition it is assigned next, even at offsets the earlier partition also holds."""
    from freshlake.streaming.kafka_source import KafkaRange, KafkaSourceOptions, read_range

    servers = stream_config.kafka.bootstrap_servers
    other = f"src-{uuid.uuid4().hex[:8]}"
    create_topic(servers, other, partitions=2)
    produce(servers, topic, 400)
    produce(servers, other, 400, start=10_000)
    options = KafkaSourceOptions.parse(
        {"kafka.bootstrap.servers": servers, "subscribe": f"{topic},{other}"}
    )

    def values(name: str, partition: int, start: int, end: int) -> list[bytes]:
        rng = KafkaRange(name, partition, start, end)
        return [v for b in read_range(options, rng) for v in b.column("value").to_pylist()]

    # The first read stops early, so its consumer may hold fetched records past the range.
    first = values(topic, 0, 0, 5)
    second = values(other, 1, 0, 200)
    third = values(topic, 1, 3, 150)
    assert first == [f"v{i}".encode() for i in range(0, 10, 2)]
    assert second == [f"v{10_000 + i}".encode() for i in range(1, 400, 2)]
    assert third == [f"v{i}".encode() for i in range(7, 300, 2)]
