"""`release_events`: one row per registration, promotion, rollback and canary verdict."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from freshlake.config import Config
from freshlake.lake import Lake
from freshlake.release.registry import AliasMove

RELEASE_EVENTS = "release_events"

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_at", pa.timestamp("us", tz="UTC"), False),
        pa.field("action", pa.string(), False),  # register | promote | rollback | reject
        pa.field("model_name", pa.string(), False),
        pa.field("alias", pa.string(), True),
        pa.field("version", pa.string(), True),  # where the alias points now
        pa.field("previous_version", pa.string(), True),  # where it pointed before
        pa.field("reason", pa.string(), True),
        pa.field("actor", pa.string(), True),
        pa.field("detail", pa.string(), True),  # JSON: metrics, canary figures, registry URI
        pa.field("dt", pa.date32(), False),
    ]
)


def record_event(
    lake: Lake, model_name: str, move: AliasMove, detail: dict[str, Any] | None = None
) -> int:
    """Append one event row; returns the table version."""
    now = datetime.now(UTC)
    row = {
        "event_at": now,
        "action": move.action,
        "model_name": model_name,
        "alias": move.alias,
        "version": move.version,
        "previous_version": move.previous_version,
        "reason": move.reason,
        "actor": _actor(),
        "detail": json.dumps(detail or {}, sort_keys=True, default=str),
        "dt": now.date(),
    }
    table = pa.Table.from_pylist([row], schema=EVENT_SCHEMA)
    return lake.append_arrow(RELEASE_EVENTS, table, partition_by=["dt"]).version


def read_events(lake: Lake) -> list[dict[str, Any]]:
    """Every event, oldest first (empty when none was recorded)."""
    if not lake.exists(RELEASE_EVENTS):
        return []
    rows = lake.read_arrow(RELEASE_EVENTS).to_pylist()
    return sorted(rows, key=lambda r: r["event_at"])


def open_event_lake(config: Config) -> Lake:
    """The lake that holds `release_events` and `monitor_alerts` (starts the Spark session)."""
    from freshlake.lake import open_lake
    from freshlake.spark import get_spark

    return open_lake(config, get_spark(config))


def _actor() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
