"""`freshlake generate-logs`: write synthetic impression and action logs with known statistics."""

from __future__ import annotations

import argparse
import json
import sys

from freshlake.cli import run_module

HELP = "write synthetic impression/action logs (JSONL, Parquet) with true CTRs and a manifest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--impressions", type=int, help="impressions to generate")
    parser.add_argument("--seed", type=int, help="random seed (same seed, same bytes)")
    parser.add_argument(
        "--format",
        dest="formats",
        nargs="+",
        choices=["jsonl", "parquet"],
        help="file formats to write (default from generate.formats)",
    )
    parser.add_argument("--workers", type=int, help="worker processes (0 = one per core)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace logs generated earlier in --out"
    )


def run(args: argparse.Namespace) -> int:
    from freshlake.config import GenerateConfig
    from freshlake.synth import generate_logs

    config = args.config
    flags = {
        "impressions": args.impressions,
        "seed": args.seed,
        "formats": args.formats,
        "workers": args.workers,
    }
    chosen = {k: v for k, v in flags.items() if v is not None}
    try:
        settings = GenerateConfig.model_validate({**config.generate.model_dump(), **chosen})
    except ValueError as exc:  # pydantic's ValidationError names the bad flag
        print(f"freshlake generate-logs: {exc}", file=sys.stderr)
        return 2
    try:
        manifest = generate_logs(
            settings,
            args.out,
            window_seconds=config.labels.attribution_window_seconds,
            overwrite=args.overwrite,
        )
    except FileExistsError as exc:
        print(f"freshlake generate-logs: {exc}; --overwrite replaces them", file=sys.stderr)
        return 2
    print(json.dumps({"out": args.out, **manifest["truth"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_module("freshlake.jobs.generate_logs"))
