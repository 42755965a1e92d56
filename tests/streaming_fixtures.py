"""Fixtures of the streaming tests: one local Tansu broker per test run, on a free port."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta

import pytest

# Event time zero of the joiner tests' events.
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


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


@pytest.fixture
def join_config(stream_config):
    """Every impression kept (negative rate 1), so each matured one must appear exactly once;
    a 60-minute attribution window and a 1-minute watermark delay."""
    from freshlake.config import build_config

    tree = stream_config.model_dump(mode="json")
    tree["sampling"]["negative_rate"] = 1.0
    tree["sampling"]["rare_item"]["boost"] = 1.0
    tree["quality"]["imputation"] = {"hour": 12}
    tree["labels"]["attribution_window_seconds"] = 3600
    tree["labels"]["clock_skew_seconds"] = 60
    tree["streaming"]["watermark_delay_seconds"] = 60
    return build_config(tree)


def impression(impression_id: str, minutes: float, **extra) -> dict:
    """An impression served `minutes` after T0."""
    return {
        "impression_id": impression_id,
        "user_id": "u1",
        "item_id": "item-1",
        "served_at": T0 + timedelta(minutes=minutes),
        "position": 1,
        "features": {"device": "ios", "hour": 12, "query": "red shoes"},
        **extra,
    }


def action(impression_id: str, kind: str, minutes: float) -> dict:
    """An action of `kind` `minutes` after T0."""
    return {
        "impression_id": impression_id,
        "action": kind,
        "action_at": T0 + timedelta(minutes=minutes),
    }


def create_topic(bootstrap_servers: str, topic: str, partitions: int = 2) -> None:
    """Create `topic` on the broker and wait for it."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions)]).values():
        future.result(timeout=10)
