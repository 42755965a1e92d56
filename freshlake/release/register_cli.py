"""`freshlake register MODEL`: log a signed model to MLflow and register a new version."""

from __future__ import annotations

import argparse
import sys

HELP = "register a signed model in the MLflow registry (lineage tags, alias challenger)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a signed model folder")
    parser.add_argument(
        "--alias",
        default="challenger",
        help="alias of the new version (challenger; none: no alias)",
    )


def run(args: argparse.Namespace) -> int:
    from freshlake.release.events import open_event_lake, record_event
    from freshlake.release.registry import Registry, RegistryError
    from freshlake.release.signing import SignatureError

    config = args.config
    registry = Registry(config)
    alias = None if args.alias.lower() == "none" else args.alias
    try:
        move = registry.register(args.model, alias)
    except (SignatureError, RegistryError) as exc:
        print(f"freshlake register: refused: {exc}", file=sys.stderr)
        return 1
    record_event(open_event_lake(config), registry.name, move, {"model_dir": args.model})
    print(
        f"registered {args.model} as {registry.name} version {move.version}"
        + (f" (alias {alias})" if alias else "")
    )
    return 0
