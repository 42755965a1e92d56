"""Forget users: remove every row of theirs from every table, then vacuum the files that held them.

A user's rows are found three ways: the `user_id` column; rows keyed by one of the user's
impression ids (actions logged without a user id, examples); and quarantined payloads that
mention the user id or one of their impression ids as a JSON string. Only the data files that
hold such rows are rewritten (one commit per table), so the cost follows the user's footprint,
not the table size. Nothing identifying is written to the Delta log or to the `privacy_log`
table: requests are recorded by SHA-256 of the user id.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pyspark.sql import DataFrame
from pyspark.sql.types import (
    ArrayType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from freshlake.config import PrivacyConfig
from freshlake.lake import Lake
from freshlake.ops.sql_literals import sql_in, sql_string

log = logging.getLogger(__name__)

PRIVACY_LOG_TABLE = "privacy_log"
PRIVACY_LOG_SCHEMA = StructType(
    [
        StructField("request_id", StringType(), False),
        StructField("requested_at", TimestampType(), False),
        StructField("user_id_sha256", ArrayType(StringType()), False),
        StructField("rows_removed", MapType(StringType(), LongType()), False),
        StructField("files_rewritten", MapType(StringType(), LongType()), False),
        StructField("files_vacuumed", MapType(StringType(), LongType()), False),
        # When files that held the rows are physically gone (now, or after the retention).
        StructField("files_deleted_by", TimestampType(), False),
    ]
)


@dataclass
class ForgetReport:
    """What forgetting a set of users did, per table."""

    request_id: str
    rows_removed: dict[str, int] = field(default_factory=dict)
    files_rewritten: dict[str, int] = field(default_factory=dict)
    files_vacuumed: dict[str, int] = field(default_factory=dict)
    files_deleted_by: datetime | None = None


def user_hash(user_id: str) -> str:
    return hashlib.sha256(user_id.encode()).hexdigest()


def match_condition(
    columns: list[str], user_ids: list[str], impression_ids: list[str]
) -> str | None:
    """SQL condition selecting a table's rows that belong to the users, or None if it cannot."""
    clauses = []
    if "user_id" in columns:
        clauses.append(sql_in("user_id", user_ids))
    if "impression_id" in columns and impression_ids:
        clauses.append(sql_in("impression_id", impression_ids))
    if "raw" in columns:
        needles = ", ".join(sql_string(f'"{v}"') for v in [*user_ids, *impression_ids])
        clauses.append(f"exists(array({needles}), x -> instr(coalesce(raw, ''), x) > 0)")
    return " OR ".join(f"({c})" for c in clauses) or None


def impressions_of(lake: Lake, tables: list[str], user_ids: list[str]) -> list[str]:
    """Every impression id served to the users, from any table that has both columns."""
    found: DataFrame | None = None
    for table in tables:
        if not lake.exists(table):
            continue
        df = lake.read(table)
        if {"user_id", "impression_id"} <= set(df.columns):
            ids = df.where(sql_in("user_id", user_ids)).select("impression_id")
            found = ids if found is None else found.union(ids)
    if found is None:
        return []
    return sorted(r.impression_id for r in found.distinct().collect() if r.impression_id)


def forget_users(
    lake: Lake, user_ids: list[str], config: PrivacyConfig, request_id: str
) -> ForgetReport:
    """Remove the users' rows from every configured table and vacuum the files that held them."""
    users = sorted({u for u in user_ids if u})
    if not users:
        raise ValueError("no user id given")
    report = ForgetReport(request_id)
    impression_ids = impressions_of(lake, config.tables, users)
    for table in config.tables:
        if not lake.exists(table):
            continue
        condition = match_condition(lake.read(table).columns, users, impression_ids)
        if condition is None:
            continue
        deleted = lake.delete(
            table,
            condition,
            metadata={"freshlake.operation": "forget-user", "freshlake.request_id": request_id},
        )
        if deleted.rows_removed is not None:  # an engine may not say (then: vacuum anyway)
            report.rows_removed[table] = deleted.rows_removed
        if deleted.files_rewritten is not None:
            report.files_rewritten[table] = deleted.files_rewritten
        log.info(
            "forget %s: %s rows removed from %s (%s files rewritten)",
            request_id,
            deleted.rows_removed,
            table,
            deleted.files_rewritten,
        )
        if deleted.rows_removed != 0:
            removed = lake.vacuum(table, config.vacuum_retention_hours)
            if removed is not None:  # the delta-spark engine does not list what it deleted
                report.files_vacuumed[table] = len(removed)
    report.files_deleted_by = datetime.now(UTC) + timedelta(hours=config.vacuum_retention_hours)
    _record(lake, users, report)
    return report


def _record(lake: Lake, users: list[str], report: ForgetReport) -> None:
    row = {
        "request_id": report.request_id,
        "requested_at": datetime.now(UTC),
        "user_id_sha256": [user_hash(u) for u in users],
        "rows_removed": report.rows_removed,
        "files_rewritten": report.files_rewritten,
        "files_vacuumed": report.files_vacuumed,
        "files_deleted_by": report.files_deleted_by,
    }
    lake.write(PRIVACY_LOG_TABLE, lake.spark.createDataFrame([row], PRIVACY_LOG_SCHEMA))
