"""Start and stop a Spark Connect server on loopback from the pip `pyspark` distribution.

The wheel ships the server (`jars/spark-connect_2.13-*.jar`); it runs as a Spark application
(`spark-submit --class org.apache.spark.sql.connect.service.SparkConnectServer`) in local mode,
and jobs reach it with `--set spark.remote=sc://127.0.0.1:PORT` (or $SPARK_REMOTE), the way
Databricks serverless and shared clusters run user code. Its Python workers (UDFs, foreachBatch
functions, Python data sources) use this interpreter, so they import freshlake as the client
does. State (pid, port, log) lives in one folder so `stop` and `status` work from another process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from freshlake.cluster.standalone import HOST, _running, _signal_group, free_port, spark_home
from freshlake.spark import LOCAL_CONF, REQUIRED_CONF

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
STATE_FILE = "connect.json"


@dataclass
class ConnectServer:
    """Where a running local Spark Connect server is and how to reach it."""

    state_dir: str
    port: int
    pid: int
    master: str

    @property
    def url(self) -> str:
        """The `spark.remote` / SPARK_REMOTE value that reaches this server."""
        return f"sc://{HOST}:{self.port}"

    @property
    def log(self) -> Path:
        return Path(self.state_dir) / "logs" / "connect.log"


def connect_jar() -> Path:
    """The Spark Connect server jar inside the installed `pyspark` wheel."""
    jars = sorted((spark_home() / "jars").glob("spark-connect_*.jar"))
    if not jars:
        raise FileNotFoundError(f"no spark-connect jar in {spark_home() / 'jars'}")
    return jars[0]


def start_connect(
    state_dir: str | os.PathLike[str] = ".connect",
    master: str = "local[2]",
    conf: Mapping[str, str] | None = None,
    timeout_s: float = 180.0,
) -> ConnectServer:
    """Start a Connect server on 127.0.0.1 (a free port); return once it accepts clients."""
    state = Path(state_dir).resolve()
    existing = connect_status(state)
    if existing is not None:
        return existing
    connect_jar()  # a clear error when the wheel lacks the server
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {
        **LOCAL_CONF,
        **REQUIRED_CONF,
        **(conf or {}),
        "spark.connect.grpc.binding.address": HOST,
        "spark.connect.grpc.binding.port": str(port),
    }
    args = [str(spark_home() / "bin" / "spark-submit"), "--master", master, "--class", SERVER_CLASS]
    args += ["--name", "freshlake-connect"]
    for key, value in settings.items():
        args += ["--conf", f"{key}={value}"]
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": HOST,
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
    }
    env.pop("SPARK_REMOTE", None)
    env.pop("SPARK_CONNECT_MODE_ENABLED", None)
    with open(logs / "connect.log", "ab") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = ConnectServer(state_dir=str(state), port=port, pid=proc.pid, master=master)
    (state / STATE_FILE).write_text(json.dumps(asdict(server), indent=2))

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _running(proc.pid):
        if _accepts(port):
            return server
        time.sleep(0.5)
    tail = server.log.read_text(errors="replace")[-3000:]
    stop_connect(state)
    raise RuntimeError(f"Spark Connect server did not come up within {timeout_s:.0f}s\n{tail}")


def connect_status(state_dir: str | os.PathLike[str] = ".connect") -> ConnectServer | None:
    """The running server recorded in `state_dir`, or None if it is not running."""
    path = Path(state_dir).resolve() / STATE_FILE
    if not path.exists():
        return None
    server = ConnectServer(**json.loads(path.read_text()))
    return server if _running(server.pid) and _accepts(server.port) else None


def stop_connect(state_dir: str | os.PathLike[str] = ".connect", timeout_s: float = 30.0) -> bool:
    """Stop the server in `state_dir` (SIGTERM, then SIGKILL); True if there was one to stop."""
    path = Path(state_dir).resolve() / STATE_FILE
    if not path.exists():
        return False
    server = ConnectServer(**json.loads(path.read_text()))
    _signal_group(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _running(server.pid):
        time.sleep(0.2)
    _signal_group(server.pid, signal.SIGKILL)
    path.unlink()
    return True


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0
