"""The `freshlake` console script: one subcommand per job, each with its own `--help`.

A subcommand is a module with `HELP` (one line), `add_arguments(parser)` and
`run(args) -> int`; `args.config` holds the validated `Config`. The same modules run under
`python -m freshlake.jobs.<job>` and `spark-submit jobs/<job>.py` through `run_module`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from freshlake.config import ConfigError, load_config

# command name -> module; entry points stay thin and call library code.
COMMANDS: dict[str, str] = {
    "generate-logs": "freshlake.jobs.generate_logs",
    "ingest": "freshlake.jobs.ingest",
    "ingest-obd": "freshlake.jobs.ingest_obd",
    "sql": "freshlake.jobs.sql",
    "train": "freshlake.training.train_cli",
    "evaluate": "freshlake.training.evaluate_cli",
    "compare-models": "freshlake.training.compare_cli",
    "qualify": "freshlake.release.qualify_cli",
    "sign": "freshlake.release.sign_cli",
    "register": "freshlake.release.register_cli",
    "promote": "freshlake.release.promote_cli",
    "rollback": "freshlake.release.rollback_cli",
    "canary": "freshlake.release.canary_cli",
    "build-training-set": "freshlake.jobs.build_training_set",
    "item-stats": "freshlake.jobs.item_stats",
    "broker": "freshlake.streaming.broker_cli",
    "produce": "freshlake.streaming.produce_cli",
    "stream-ingest": "freshlake.streaming.ingest_cli",
    "stream-join": "freshlake.streaming.join_cli",
    "parity": "freshlake.streaming.parity_cli",
    "cluster": "freshlake.cluster.cli",
    "connect": "freshlake.cluster.connect_cli",
    "demo": "freshlake.demo",
    "config": "freshlake.config_cli",
    "forget-user": "freshlake.jobs.forget_user",
    "maintain": "freshlake.jobs.maintain",
    "monitor": "freshlake.jobs.monitor",
    "report": "freshlake.jobs.report",
}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """`--config` and `--set`, shared by every subcommand."""
    parser.add_argument(
        "--config",
        "-c",
        default=None,
        help="config YAML (default: $FRESHLAKE_CONFIG or conf/local.yaml)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set sampling.negative_rate=0.1 (repeatable)",
    )


def _load(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="freshlake",
        description="Fresh, statistically correct training data for CTR and recommendation models.",
    )
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = _load(name)
        except ImportError as exc:  # a broken install must not take every command down
            sub.add_parser(name, help=f"(unavailable: {exc})")
            continue
        child = sub.add_parser(name, help=module.HELP, description=module.HELP)
        add_common_arguments(child)
        module.add_arguments(child)
        child.set_defaults(_module=module)
    return parser


def _execute(module: ModuleType, args: argparse.Namespace) -> int:
    level = getattr(args, "log_level", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLevelName(level) != logging.DEBUG:
        # py4j logs every JVM callback (each foreachBatch micro-batch) at INFO.
        logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        args.config_path = args.config  # kept for commands that run other commands
        args.config = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"freshlake: config error: {exc}", file=sys.stderr)
        return 2
    return int(module.run(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `freshlake` console script."""
    args = build_parser().parse_args(argv)
    return _execute(args._module, args)


def run_module(module_name: str, argv: Sequence[str] | None = None) -> int:
    """Run one job module standalone (`python -m freshlake.jobs.x`, `spark-submit jobs/x.py`)."""
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=module_name, description=module.HELP)
    parser.add_argument("--log-level", default="INFO")
    add_common_arguments(parser)
    module.add_arguments(parser)
    return _execute(module, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
