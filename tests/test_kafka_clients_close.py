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
