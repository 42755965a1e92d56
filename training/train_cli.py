"""`freshlake train`: train the CTR model on a pinned Delta snapshot with torchrun DDP."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "train the CTR model on a Delta table snapshot (torchrun DDP, or a Spark cluster)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="model folder (checkpoints, model, card)")
    parser.add_argument("--table", default=None, help="logical table (default training.table)")
    parser.add_argument("--version", type=int, default=None, help="Delta version (default latest)")
    parser.add_argument("--epochs", type=int, default=None, help="default training.epochs")
    parser.add_argument("--loader", choices=["delta", "petastorm"], default=None)
    parser.add_argument("--nproc", type=int, default=None, help="processes per node")
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument("--master-addr", default="127.0.0.1")
    parser.add_argument("--master-port", type=int, default=None)
    parser.add_argument(
        "--launcher",
        choices=["torchrun", "spark"],
        default="torchrun",
        help="spark: run as TorchDistributor tasks on the configured Spark master",
    )
    parser.add_argument("--warm-start", default=None, help="start from this model folder")
    parser.add_argument(
        "--since-version",
        type=int,
        default=None,
        help="train only on files added after this version (default with --warm-start on the "
        "same table: the version the previous model saw)",
    )
    parser.add_argument("--start-date", default=None, help="first dt partition (YYYY-MM-DD)")
    parser.add_argument("--end-date", default=None, help="dt partitions before this date")
    parser.add_argument(
        "--audit-column", default=None, help="record the values of this int column each step"
    )


def run(args: argparse.Namespace) -> int:
    from freshlake.training.launch import Topology, make_job, run_on_spark, run_torchrun

    updates = {
        key: value
        for key, value in (("epochs", args.epochs), ("loader", args.loader), ("nproc", args.nproc))
        if value is not None
    }
    config = args.config.model_copy(
        update={"training": args.config.training.model_copy(update=updates)}
    )
    try:
        job = make_job(
            config,
            args.out,
            table=args.table,
            version=args.version,
            since_version=args.since_version,
            warm_start=args.warm_start,
            start_date=args.start_date,
            end_date=args.end_date,
            audit_column=args.audit_column,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"freshlake train: {exc}", file=sys.stderr)
        return 2
    if args.launcher == "spark":
        card = run_on_spark(job, config.training.nproc * args.nnodes)
        print(json.dumps(card["metrics"] if card else {}, indent=2))
        return 0
    topology = Topology(
        config.training.nproc, args.nnodes, args.node_rank, args.master_addr, args.master_port
    )
    return run_torchrun(job, topology)
