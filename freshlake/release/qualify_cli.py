"""`freshlake qualify MODEL`: qualification metrics and thresholds; exit 3 when not qualified."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date

HELP = "qualify a model on rows it never trained on, against thresholds and the champion"

NOT_QUALIFIED = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder written by `freshlake train`")
    champion = parser.add_mutually_exclusive_group()
    champion.add_argument(
        "--champion", default=None, help="compare with this model folder (default: the registry's)"
    )
    champion.add_argument(
        "--no-champion", action="store_true", help="judge the model on its own thresholds only"
    )
    parser.add_argument("--table", default=None, help="default: release.qualify_table")
    parser.add_argument("--version", type=int, default=None, help="table version (latest)")
    parser.add_argument(
        "--start-date",
        type=date.fromisoformat,
        default=None,
        help="only rows with dt >= this (e.g. the day after the training window)",
    )
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")


def run(args: argparse.Namespace) -> int:
    from freshlake.release.qualify import NoQualificationRowsError, format_report, qualify

    config = args.config
    try:
        if args.champion or args.no_champion:
            report = qualify(
                config,
                args.model,
                args.champion,
                args.champion,
                args.table,
                args.version,
                args.start_date,
            )
        else:
            report = _against_registry_champion(args)
    except NoQualificationRowsError as exc:
        print(f"freshlake qualify: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2, default=str) if args.json else format_report(report))
    return 0 if report["qualified"] else NOT_QUALIFIED


def _against_registry_champion(args: argparse.Namespace) -> dict:
    from freshlake.release.qualify import qualify
    from freshlake.release.registry import CHAMPION, Registry

    config = args.config
    registry = Registry(config)
    champion = registry.alias_version(CHAMPION)
    if champion is None or champion == _registered_version(registry, args.model):
        return qualify(config, args.model, None, None, args.table, args.version, args.start_date)
    with registry.checked_out(champion) as champion_dir:
        return qualify(
            config, args.model, champion_dir, champion, args.table, args.version, args.start_date
        )


def _registered_version(registry, model: str) -> str | None:
    """The version a signed model folder was registered as (None: unsigned or unregistered)."""
    from freshlake.release.signing import SignatureError

    try:
        return registry.version_of(model)
    except SignatureError:
        return None
