"""Shared fixtures: one Spark session for the whole test run, a fresh lake per test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# Broker and topic fixtures of the streaming tests.
pytest_plugins = ["tests.streaming_fixtures"]


@pytest.fixture(scope="session")
def spark():
    """The test run's only Spark session: local[2], UI off, 2 shuffle partitions."""
    from freshlake.config import load_config
    from freshlake.spark import get_spark

    session = get_spark(load_config(REPO / "conf" / "local.yaml"))
    yield session
    session.stop()


@pytest.fixture
def config(tmp_path):
    """The embedded default config with its lake in a fresh temporary folder."""
    from freshlake.config import load_config

    return load_config(REPO / "conf" / "local.yaml", {"lake.root": str(tmp_path / "lake")})


@pytest.fixture
def lake(config, spark):
    from freshlake.lake import open_lake

    return open_lake(config, spark)
