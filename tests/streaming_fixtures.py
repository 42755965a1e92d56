"""Fixtures of the streaming tests: one local Tansu broker per test run, on a free port."""

from __future__ import annotations

import socket
import uuid

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A running `LocalBroker` (in-memory topics), stopped at the end of the test run."""
    from freshlake.config import BrokerConfig
    from freshlake.streaming.broker import LocalBroker

    state_dir = tmp_path_factory.mktemp("broker")
    broker = LocalBroker(BrokerConfig(port=free_port(), state_dir=str(state_dir)))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def stream_config(config, kafka_broker, tmp_path):
    """The test config pointed at the test broker, with topics unique to the test."""
    suffix = uuid.uuid4().hex[:8]
    return config.model_copy(
        update={
            "kafka": config.kafka.model_copy(
                update={
                    "bootstrap_servers": kafka_broker.bootstrap_servers,
                    "topics": {
                        "impressions": f"impressions-{suffix}",
                        "actions": f"actions-{suffix}",
                    },
                }
            ),
            "streaming": config.streaming.model_copy(
                update={"checkpoint_root": str(tmp_path / "checkpoints"), "trigger_seconds": 0.5}
            ),
        }
    )


def create_topic(bootstrap_servers: str, topic: str, partitions: int = 2) -> None:
    """Create `topic` on the broker and wait for it."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions)]).values():
        future.result(timeout=10)
