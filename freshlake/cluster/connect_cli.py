"""`freshlake connect start|stop|status`: a local Spark Connect server for trying Connect mode."""

from __future__ import annotations

import argparse

HELP = "start, stop or inspect a local Spark Connect server (127.0.0.1, the pyspark wheel's own)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--state-dir", default=".connect", help="pid, port and log (.connect)")


def run(args: argparse.Namespace) -> int:
    from freshlake.cluster.connect import connect_status, start_connect, stop_connect

    if args.action == "start":
        spark = args.config.spark
        master = spark.master if spark.master and spark.master.startswith("local") else "local[2]"
        server = start_connect(args.state_dir, master, {**spark.local_conf, **spark.conf})
        print(f"Spark Connect server {server.url}  ({server.master}, log {server.log})")
        print(f"run a job through it: freshlake <command> --set spark.remote={server.url}")
        return 0
    if args.action == "stop":
        print("stopped" if stop_connect(args.state_dir) else "no Connect server running")
        return 0
    server = connect_status(args.state_dir)
    if server is None:
        print("no Connect server running")
        return 1
    print(f"running: {server.url}  pid {server.pid}  log {server.log}")
    return 0
