"""Launchers for the training function: torchrun (laptop, GPU boxes, multi-node) and Spark
clusters through `pyspark.ml.torch.distributor.TorchDistributor`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deltalake.exceptions import DeltaError, TableNotFoundError

from freshlake.config import Config
from freshlake.training.artifact import read_card
from freshlake.training.dataset import decoding_threads, process_cores
from freshlake.training.job import JOB_FILE, TrainJob
from freshlake.training.snapshot import open_snapshot, table_uri
from freshlake.training.trainer import train


@dataclass(frozen=True)
class Topology:
    """Processes and nodes for torchrun; node 0's address is the rendezvous point."""

    nproc: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None  # None: a free local port (single node only)


def make_job(
    config: Config,
    out_dir: str | Path,
    *,
    table: str | None = None,
    version: int | None = None,
    since_version: int | None = None,
    warm_start: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    audit_column: str | None = None,
) -> TrainJob:
    """A job on `table` pinned at `version` (the latest when None), written to `out_dir`.

    With `warm_start` and no `since_version`, a warm start on the table the previous model was
    trained on continues from the version it saw: only files added since then are read.
    """
    name = table or config.training.table
    uri = table_uri(config.lake.root, config.lake.table_name(name))
    try:
        pinned = open_snapshot(uri, version, config.lake.storage_options).version
    except TableNotFoundError as exc:
        raise ValueError(
            f"no Delta table {name!r} at {uri} (version {version}); build it first, "
            "e.g. `freshlake build-training-set`"
        ) from exc
    except DeltaError as exc:
        raise ValueError(f"cannot open {uri} at version {version}: {exc}") from exc
    if warm_start and since_version is None:
        previous = read_card(warm_start)["data"]
        if previous.get("uri") == uri:
            since_version = int(previous["version"])
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    return TrainJob(
        config=config.model_dump(mode="json"),
        table=name,
        table_uri=uri,
        version=pinned,
        out_dir=str(out),
        since_version=since_version,
        warm_start=str(Path(warm_start).resolve()) if warm_start else None,
        start_date=start_date,
        end_date=end_date,
        audit_column=audit_column,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(job_path: str | Path, topology: Topology) -> list[str]:
    """The torchrun command line that runs `training.worker` on this node."""
    if topology.nnodes > 1 and topology.master_port is None:
        raise ValueError("multi-node training needs an explicit --master-port")
    port = topology.master_port or free_port()
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={topology.nproc}",
        f"--nnodes={topology.nnodes}",
        f"--node-rank={topology.node_rank}",
        f"--master-addr={topology.master_addr}",
        f"--master-port={port}",
        "-m",
        "freshlake.training.worker",
        str(job_path),
    ]


def cpu_threads(nproc: int, loader_workers: int, cores: int | None = None) -> int:
    """Intra-op threads per training process: its share of the node's `cores` (by default
    those this process may run on, `process_cores`) less its loader's decoding threads
    (`decoding_threads`). The read-ahead thread waits on I/O and gets no core: reserving one
    cost 1 process with 0 workers on 2 cores ~8% of its samples/s. Oversubscribed cores slowed
    a 1-process CPU run ~10x here."""
    per_process = process_cores(nproc, cores)
    return max(1, per_process - decoding_threads(loader_workers, per_process))


def run_torchrun(job: TrainJob, topology: Topology) -> int:
    """Save the job and run it under torchrun; returns torchrun's exit status.

    Sets OMP_NUM_THREADS (unless already set) to `cpu_threads(...)`."""
    job_path = job.save()
    workers = job.parsed_config().training.num_workers
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(cpu_threads(topology.nproc, workers)))
    return subprocess.run(torchrun_command(job_path, topology), env=env, check=False).returncode


def train_job_dict(job: dict[str, Any]) -> dict[str, Any] | None:
    """The function TorchDistributor runs in every task (the job travels with the function, so
    only `out_dir` needs storage all tasks share)."""
    return train(TrainJob(**job))


def run_on_spark(
    job: TrainJob, num_processes: int, *, local_mode: bool = False, use_gpu: bool = False
) -> dict[str, Any] | None:
    """Run the job as a barrier stage of Spark tasks on the configured Spark master (or the
    active session), e.g. Databricks; rank 0's task writes the model to `job.out_dir`."""
    from pyspark.ml.torch.distributor import TorchDistributor

    from freshlake.spark import get_spark

    get_spark(job.parsed_config())  # TorchDistributor needs an active session
    job.save()
    distributor = TorchDistributor(
        num_processes=num_processes, local_mode=local_mode, use_gpu=use_gpu
    )
    return distributor.run(train_job_dict, asdict(job))


__all__ = ["JOB_FILE", "Topology", "make_job", "run_on_spark", "run_torchrun", "torchrun_command"]
