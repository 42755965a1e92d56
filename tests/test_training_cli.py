"""`freshlake train / evaluate / compare-models` argument handling and errors (no training)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from freshlake.cli import build_parser, main
from freshlake.training.launch import Topology, torchrun_command
from freshlake.training.synthetic import synthetic_examples, write_synthetic_table


def test_training_commands_are_registered():
    parser = build_parser()
    args = parser.parse_args(["train", "--out", "o", "--nproc", "2", "--nnodes", "2"])
    assert args.nproc == 2 and args.nnodes == 2 and args.master_addr == "127.0.0.1"
    assert parser.parse_args(["compare-models", "a", "b"]).model_b == "b"
    assert parser.parse_args(["evaluate", "m", "--negative-rate", "0.1"]).negative_rate == 0.1


def test_missing_table_or_version_is_a_clear_error(tmp_path, capsys):
    root = tmp_path / "lake"
    assert main(["train", "--set", f"lake.root={root}", "--out", str(tmp_path / "o")]) == 2
    assert "no Delta table 'examples'" in capsys.readouterr().err
    write_synthetic_table(str(root / "examples"), synthetic_examples(500, seed=1))
    args = ["train", "--set", f"lake.root={root}", "--version", "7", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "at version 7" in capsys.readouterr().err


def test_torchrun_command_passes_the_topology_through():
    cmd = torchrun_command("job.json", Topology(4, 2, 1, "10.0.0.1", 29500))
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert "--nproc-per-node=4" in cmd and "--nnodes=2" in cmd and "--node-rank=1" in cmd
    assert "--master-addr=10.0.0.1" in cmd and "--master-port=29500" in cmd
    assert cmd[-3:] == ["-m", "freshlake.training.worker", "job.json"]
    with pytest.raises(ValueError, match="master-port"):
        torchrun_command("job.json", Topology(nproc=1, nnodes=2))


@pytest.mark.parametrize(
    ("cores", "nproc", "workers", "threads"),
    # (2 cores: both, the loader decoding in the consuming thread; 96 cores, 8 processes of
    # 4 workers: 12 each, 4 decoding, 8 intra-op; never fewer than 1)
    [
        (2, 1, 0, 2),
        (2, 1, 2, 2),
        (2, 2, 2, 1),
        (16, 1, 0, 16),
        (16, 2, 2, 6),
        (96, 8, 4, 8),
        (4, 8, 2, 1),
    ],
)
def test_intra_op_threads_leave_the_loader_threads_their_cores(cores, nproc, workers, threads):
    from freshlake.training.dataset import decoding_threads
    from freshlake.training.launch import cpu_threads

    assert cpu_threads(nproc, workers, cores) == threads
    per_process = cores // nproc
    if per_process > 1:  # the process's threads fit in its share of the cores
        assert threads + decoding_threads(workers, per_process) <= per_process


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_intra_op_threads_count_the_cores_this_process_may_use():
    # A process pinned to one core (a container's cpuset, taskset) gets one thread, whatever
    # the host has.
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from freshlake.training.launch import cpu_threads; print(cpu_threads(1, 0))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
