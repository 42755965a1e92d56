"""`freshlake cluster start|stop|status`: a local Spark standalone cluster for trying cluster mode."""

from __future__ import annotations

import argparse

HELP = "start, stop or inspect a local Spark standalone cluster (master + workers on 127.0.0.1)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--state-dir", default=".cluster", help="pids, ports and logs (.cluster)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1, help="cores per worker")
    parser.add_argument("--memory", default="1g", help="memory per worker")


def run(args: argparse.Namespace) -> int:
    from freshlake.cluster import cluster_status, start_cluster, stop_cluster

    if args.action == "start":
        cluster = start_cluster(args.state_dir, args.workers, args.cores, args.memory)
        print(f"master {cluster.master_url}  ui {cluster.ui_url}  workers {cluster.workers}")
        print(f"run a job on it: freshlake <command> --set spark.master={cluster.master_url}")
        return 0
    if args.action == "stop":
        print("stopped" if stop_cluster(args.state_dir) else "no cluster running")
        return 0
    cluster = cluster_status(args.state_dir)
    if cluster is None:
        print("no cluster running")
        return 1
    print(f"running: master {cluster.master_url}  ui {cluster.ui_url}  pids {cluster.pids}")
    return 0
