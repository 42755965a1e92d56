"""What torchrun starts in every process: `python -m freshlake.training.worker OUT/job.json`.

A worker that trained to the end leaves with `os._exit`, after flushing its output, without
Python's finalization: gloo's worker threads release a finished collective's work (and the
Python tensors it holds) after the collective has returned, and one that needs the GIL once
finalization has begun ends in `pthread_exit` through a C++ destructor, which aborts the process
(SIGABRT, "terminate called without an active exception") after a successful run.
"""

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


def exit_now(code: int) -> None:
    """Flush logs and standard streams, then end the process without Python's finalization."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
