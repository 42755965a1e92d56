"""`freshlake broker start|stop|status`: the local Kafka-protocol broker on 127.0.0.1."""

from __future__ import annotations

import argparse
import sys

HELP = "start, stop or probe the local Kafka-protocol broker (Tansu, 127.0.0.1, in-memory)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")


def run(args: argparse.Namespace) -> int:
    from freshlake.streaming.broker import BrokerError, LocalBroker

    broker = LocalBroker(args.config.broker)
    try:
        if args.action == "start":
            pid = broker.start(timeout=args.timeout)
            print(
                f"broker running: pid {pid} on {broker.bootstrap_servers}, topics in memory, "
                f"log {broker.log_file}"
            )
        elif args.action == "stop":
            stopped = broker.stop(timeout=args.timeout)
            print("broker stopped" if stopped else "broker was not running")
        else:
            status = broker.status()
            state = "ready" if status.ready else ("not answering" if status.running else "stopped")
            print(f"broker {state}: pid {status.pid} on {status.bootstrap_servers}")
            return 0 if status.ready else 1
    except BrokerError as exc:
        print(f"freshlake broker: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from freshlake.cli import run_module

    sys.exit(run_module("freshlake.streaming.broker_cli"))
