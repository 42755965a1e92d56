"""`freshlake produce`: replay logged impressions and actions into the Kafka topics."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "replay generated logs (or the lake's impressions/actions) into Kafka at a chosen rate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--logs", help="a generated-logs folder (impressions/, actions/)")
    source.add_argument(
        "--from-lake", action="store_true", help="the lake's impressions and actions tables"
    )
    parser.add_argument("--rate", type=float, help="events/s (default streaming.produce_rate)")
    parser.add_argument(
        "--timing",
        choices=["original", "live"],
        default="original",
        help="original: keep timestamps, event-time order; live: re-stamp with the send time "
        "and delay actions by their logged delay / --compression",
    )
    parser.add_argument(
        "--compression",
        type=float,
        help="live timing: divide logged action delays by this (default streaming.time_compression)",
    )
    parser.add_argument(
        "--limit", type=int, help="replay only the first N impressions (and their actions)"
    )
    parser.add_argument("--partitions", type=int, default=2, help="partitions of created topics")


def run(args: argparse.Namespace) -> int:
    from freshlake.streaming.producer import EventLogger, ensure_topics
    from freshlake.streaming.replay import load_logs, replay

    config = args.config
    lake = None
    if args.from_lake:
        from freshlake.lake import open_lake
        from freshlake.spark import get_spark

        lake = open_lake(config, get_spark(config))
    impressions, actions = load_logs(args.logs, lake, limit=args.limit)
    ensure_topics(config.kafka, config.kafka.topics.values(), args.partitions)
    stats = replay(
        EventLogger(config.kafka),
        impressions,
        actions,
        rate=args.rate or config.streaming.produce_rate,
        timing=args.timing,
        compression=args.compression or config.streaming.time_compression,
    )
    print(
        json.dumps(
            {
                "sent": stats.sent,
                "seconds": round(stats.seconds, 2),
                "events_per_s": round(stats.rate),
            }
        )
    )
    return 0


if __name__ == "__main__":
    from freshlake.cli import run_module

    sys.exit(run_module("freshlake.streaming.produce_cli"))
