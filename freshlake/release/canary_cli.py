"""`freshlake canary`: shadow-score the challenger beside the champion; roll it back if worse."""

from __future__ import annotations

import argparse
import functools
import json
import time

HELP = "score the challenger beside the champion on new matured fresh examples (auto rollback)"

ROLLED_BACK_EXIT = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--follow", action="store_true", help="keep scoring new rows until a verdict"
    )
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between passes")
    parser.add_argument(
        "--max-seconds", type=float, default=600.0, help="with --follow: give up after this"
    )
    parser.add_argument(
        "--promote", action="store_true", help="promote the challenger when the canary passes"
    )


def run(args: argparse.Namespace) -> int:
    from freshlake.release.canary import PENDING, ROLLED_BACK, canary_pass
    from freshlake.release.events import open_event_lake
    from freshlake.release.registry import Registry

    config = args.config
    registry = Registry(config)
    event_lake = functools.cache(lambda: open_event_lake(config))  # at the first verdict
    deadline = time.monotonic() + args.max_seconds
    while True:
        outcome = canary_pass(config, registry, event_lake, promote=args.promote)
        print(json.dumps(outcome, default=str), flush=True)
        if not args.follow or outcome["status"] != PENDING or time.monotonic() > deadline:
            break
        time.sleep(args.interval)
    return ROLLED_BACK_EXIT if outcome["status"] == ROLLED_BACK else 0
