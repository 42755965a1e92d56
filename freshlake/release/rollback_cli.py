"""`freshlake rollback`: return the champion alias to the version it replaced, recording why."""

from __future__ import annotations

import argparse
import sys

HELP = "roll the champion back to the previous champion (or --to-version)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", required=True, help="why; recorded on the version and event")
    parser.add_argument("--to-version", default=None, help="default: the previous champion")


def run(args: argparse.Namespace) -> int:
    from freshlake.release.events import open_event_lake, record_event
    from freshlake.release.registry import Registry, RegistryError
    from freshlake.release.signing import SignatureError

    config = args.config
    registry = Registry(config)
    try:
        move = registry.rollback(args.reason, args.to_version)
    except (SignatureError, RegistryError) as exc:
        print(f"freshlake rollback: refused: {exc}", file=sys.stderr)
        return 1
    record_event(open_event_lake(config), registry.name, move)
    print(
        f"{registry.name}: champion rolled back from version {move.previous_version} to "
        f"{move.version}: {args.reason}"
    )
    return 0
