"""Start and stop a Spark standalone cluster on loopback from the pip `pyspark` distribution.

The pip wheel has no `start-master.sh`, so the master and each worker are started with
`bin/spark-class org.apache.spark.deploy.{master.Master,worker.Worker}` (docs/design.md section 7.2).
State (pids, ports, logs) lives in one folder so `stop` and `status` work from another process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyspark

HOST = "127.0.0.1"
STATE_FILE = "cluster.json"


@dataclass
class LocalCluster:
    """Where a running local cluster is and how to reach it."""

    state_dir: str
    master_port: int
    master_ui_port: int
    workers: int
    cores_per_worker: int
    memory_per_worker: str
    pids: list[int] = field(default_factory=list)

    @property
    def master_url(self) -> str:
        return f"spark://{HOST}:{self.master_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.master_ui_port}"


def spark_home() -> Path:
    """The Spark distribution inside the installed `pyspark` package."""
    return Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _environment(state_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SPARK_HOME=str(spark_home()),
        SPARK_LOCAL_IP=HOST,
        SPARK_LOG_DIR=str(state_dir / "logs"),
        SPARK_WORKER_DIR=str(state_dir / "work"),
        PYSPARK_PYTHON=env.get("PYSPARK_PYTHON", sys.executable),
    )
    return env


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(spark_home() / "bin" / "spark-class"), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return proc.pid


def _alive_workers(cluster: LocalCluster) -> int:
    try:
        with urllib.request.urlopen(f"{cluster.ui_url}/json/", timeout=2) as resp:
            status = json.load(resp)
    except OSError:
        return -1
    return int(status.get("aliveworkers", 0))


def start_cluster(
    state_dir: str | os.PathLike[str] = ".cluster",
    workers: int = 2,
    cores_per_worker: int = 1,
    memory_per_worker: str = "1g",
    timeout_s: float = 120.0,
) -> LocalCluster:
    """Start a master and `workers` workers on 127.0.0.1; return once all workers registered."""
    state = Path(state_dir).resolve()
    existing = cluster_status(state)
    if existing is not None:
        return existing
    state.mkdir(parents=True, exist_ok=True)
    env = _environment(state)
    cluster = LocalCluster(
        state_dir=str(state),
        master_port=free_port(),
        master_ui_port=free_port(),
        workers=workers,
        cores_per_worker=cores_per_worker,
        memory_per_worker=memory_per_worker,
    )
    master = [
        "org.apache.spark.deploy.master.Master",
        *("--host", HOST, "--port", str(cluster.master_port)),
        *("--webui-port", str(cluster.master_ui_port)),
    ]
    cluster.pids.append(_spawn(master, state / "logs" / "master.log", env))
    for i in range(workers):
        worker = [
            "org.apache.spark.deploy.worker.Worker",
            cluster.master_url,
            *("--host", HOST, "--webui-port", str(free_port())),
            *("--cores", str(cores_per_worker), "--memory", memory_per_worker),
            *("--work-dir", str(state / "work" / f"worker-{i}")),
        ]
        cluster.pids.append(_spawn(worker, state / "logs" / f"worker-{i}.log", env))
    (state / STATE_FILE).write_text(json.dumps(asdict(cluster), indent=2))

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _alive_workers(cluster) >= workers:
            return cluster
        if not all(_running(pid) for pid in cluster.pids):
            break
        time.sleep(0.5)
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted((state / "logs").glob("*.log"))
    )
    stop_cluster(state)
    raise RuntimeError(f"local Spark cluster did not come up within {timeout_s:.0f}s\n{logs}")


def cluster_status(state_dir: str | os.PathLike[str] = ".cluster") -> LocalCluster | None:
    """The running cluster recorded in `state_dir`, or None if it is not (fully) running."""
    path = Path(state_dir).resolve() / STATE_FILE
    if not path.exists():
        return None
    cluster = LocalCluster(**json.loads(path.read_text()))
    if not cluster.pids or not all(_running(pid) for pid in cluster.pids):
        return None
    return cluster


def stop_cluster(state_dir: str | os.PathLike[str] = ".cluster", timeout_s: float = 30.0) -> bool:
    """Stop every process of the cluster in `state_dir`; True if there was one to stop."""
    path = Path(state_dir).resolve() / STATE_FILE
    if not path.exists():
        return False
    cluster = LocalCluster(**json.loads(path.read_text()))
    for pid in reversed(cluster.pids):
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_running(p) for p in cluster.pids):
        time.sleep(0.2)
    for pid in cluster.pids:
        _signal_group(pid, signal.SIGKILL)
    path.unlink()
    return True


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True
