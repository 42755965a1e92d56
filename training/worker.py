"""What torchrun starts in every process: `python -m freshlake.training.worker OUT/job.json`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from freshlake.training.job import TrainJob
from freshlake.training.trainer import train


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="freshlake.training.worker", description=__doc__)
    parser.add_argument("job", help="job.json written by `freshlake train`")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s rank{rank} %(name)s: %(message)s",
    )
    card = train(TrainJob.load(args.job))
    if card is not None:
        print(json.dumps({"metrics": card["metrics"], "data": card["data"]}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
