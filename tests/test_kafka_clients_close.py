"""Stopped queries and finished steps close their Kafka clients: nothing retries a stopped broker."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.streaming_fixtures import free_port

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_no_kafka_client_outlives_the_stream_and_the_broker(tmp_path):
    # The demo's order: broker start, producer, stream-join, broker stop, then later steps in
    # the same process (and Spark session). Idle periods longer than the reader pool's idle
    # close (10 s) on either side of a later Spark job that reuses the Python workers.
    probe = [sys.executable, str(REPO / "tests" / "kafka_clients_probe.py")]
    result = subprocess.run(
        [*probe, str(tmp_path), str(free_port()), "15"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    after = result.stderr.split("=== broker stopped", 1)[1]
    client_lines = [line for line in after.splitlines() if re.match(r"%\d\|", line)]
    assert not client_lines, f"{len(client_lines)} Kafka client log lines, e.g. {client_lines[:3]}"
    assert "=== kafka threads: []" in after, after[-2000:]


def test_pooled_reader_consumers_are_closed_when_idle(kafka_broker):
    import uuid

    from confluent_kafka import Producer

    from freshlake.streaming import kafka_source
    from tests.streaming_fixtures import create_topic

    topic = f"pool-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_broker.bootstrap_servers, topic, partitions=1)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers})
    for i in range(20):
        producer.produce(topic, value=f"v{i}".encode(), partition=0)
    producer.flush(10)
    options = kafka_source.KafkaSourceOptions.parse(
        {"kafka.bootstrap.servers": kafka_broker.bootstrap_servers, "subscribe": topic}
    )
    kafka_source.close_idle_consumers()  # none left by earlier tests
    for start in (0, 10):  # the second read reuses the first one's consumer
        rows = kafka_source.read_range(
            options, kafka_source.KafkaRange(topic, 0, start, start + 10)
        )
        assert sum(batch.num_rows for batch in rows) == 10
    assert kafka_source.close_idle_consumers(idle_s=60) == 0  # not idle long enough
    assert kafka_source.close_idle_consumers(idle_s=0) == 1
    assert not any(kafka_source._IDLE_CONSUMERS.values())  # noqa: SLF001
