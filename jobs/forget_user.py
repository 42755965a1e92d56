"""Remove users' rows from every table and vacuum the files that held them (privacy requests)."""

from __future__ import annotations

import argparse
import sys
import uuid

from freshlake.cli import run_module

HELP = "remove users' rows from every table (logs, examples, quarantine) and vacuum their files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user_ids", nargs="+", metavar="USER_ID")
    parser.add_argument("--request-id", default=None, help="id of the privacy request (recorded)")


def run(args: argparse.Namespace) -> int:
    from freshlake.lake import open_lake
    from freshlake.ops.privacy import forget_users
    from freshlake.spark import get_spark

    lake = open_lake(args.config, get_spark(args.config))
    request_id = args.request_id or f"forget-{uuid.uuid4().hex[:12]}"
    report = forget_users(lake, args.user_ids, args.config.privacy, request_id)
    print(f"request {report.request_id}: {len(set(args.user_ids))} user(s)")
    for table, rows in report.rows_removed.items():
        files = report.files_rewritten.get(table, "?")
        vacuumed = report.files_vacuumed.get(table, 0)
        print(f"  {table:16s} rows removed {rows:8d}  files rewritten {files}  vacuumed {vacuumed}")
    print(f"files that held the rows are deleted by {report.files_deleted_by:%Y-%m-%d %H:%M} UTC")
    return 0


if __name__ == "__main__":
    sys.exit(run_module("freshlake.jobs.forget_user"))
