"""Replay logged impressions and actions into Kafka at a chosen rate (demos, tests, benchmarks).

Sources: a generated-logs folder (`impressions/part-*.jsonl|parquet`, `actions/...`, contract 1)
or the lake's `impressions` / `actions` Delta tables. Two timings:

- `original`: every record keeps its timestamps; all records are sent in event-time order at
  `rate` events/s, so an action follows its impression by as many records as were logged in
  between (event time is what the joiner's watermarks and windows see). Malformed JSON lines are
  sent unchanged where they were in the file. This reproduces the logs exactly (parity, tests).
- `live`: impressions are sent at their share of `rate` and re-stamped with the send time; each
  action is sent `(action_at - served_at) / compression` seconds after its impression and
  re-stamped likewise, so event time tracks the wall clock (freshness benchmarks, demos).
"""

from __future__ import annotations

import heapq
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from freshlake.streaming.producer import EventLogger, to_json, utc_text

log = logging.getLogger(__name__)

Timing = Literal["original", "live"]
KINDS = ("impressions", "actions")
TIME_FIELD = {"impressions": "served_at", "actions": "action_at"}


@dataclass
class LogRecord:
    """One logged record: its raw payload, and the parsed record when it is valid JSON."""

    kind: str
    payload: bytes
    record: dict[str, Any] | None
    event_ms: int | None  # event time (ms) when it parses

    @property
    def key(self) -> bytes | None:
        value = (self.record or {}).get("impression_id")
        return str(value).encode() if value is not None else None


@dataclass
class ReplayStats:
    sent: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return sum(self.sent.values()) / self.seconds if self.seconds else 0.0


def event_millis(value: Any) -> int | None:
    """Epoch ms of a logged timestamp (ISO-8601 text, epoch ms, or datetime); None if neither."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(float(text)) if text.replace(".", "", 1).isdigit() else _iso_millis(text)
        except ValueError:
            return None
    return None


def _iso_millis(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def _record(kind: str, payload: bytes) -> LogRecord:
    try:
        parsed = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        parsed = None
    record = parsed if isinstance(parsed, dict) else None
    event_ms = event_millis(record.get(TIME_FIELD[kind])) if record else None
    return LogRecord(kind, payload, record, event_ms)


def read_log_folder(folder: str | Path, kind: str) -> Iterator[LogRecord]:
    """The records of `folder/<kind>/part-*` (JSONL lines raw as logged; Parquet rows as JSON)."""
    import pyarrow.parquet as pq

    parts = sorted(Path(folder, kind).glob("part-*"))
    jsonl = [p for p in parts if p.suffix == ".jsonl"]
    for path in jsonl or [p for p in parts if p.suffix == ".parquet"]:
        if path.suffix == ".jsonl":
            with open(path, "rb") as lines:
                for line in lines:
                    if line.strip():
                        yield _record(kind, line.rstrip(b"\r\n"))
        else:
            for row in pq.read_table(path).to_pylist():
                yield _record(kind, to_json(_plain(row)))


def read_lake_table(lake, kind: str) -> Iterator[LogRecord]:
    """The validated records of the lake's `impressions` / `actions` table, as logged JSON."""
    for row in lake.read_arrow(kind).to_pylist():
        extra = dict(row.pop("extra") or [])
        for column in ("source_file", "ingest_run_id", "dt"):
            row.pop(column, None)
        record = {**extra, **{k: v for k, v in _plain(row).items() if v is not None}}
        yield _record(kind, to_json(record))


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Arrow map values (lists of pairs) as dicts."""
    return {
        k: dict(v) if isinstance(v, list) and v and isinstance(v[0], tuple) else v
        for k, v in row.items()
    }


@dataclass(order=True)
class _Send:
    at: float  # seconds after the replay starts
    seq: int
    record: LogRecord = field(compare=False)
    # live timing: the payload's JSON before and after its event time, which is "now" at send
    template: tuple[bytes, bytes] | None = field(default=None, compare=False)


_NOW = "__freshlake_send_time_7f3a9c__"


def _stamp_template(record: LogRecord) -> tuple[bytes, bytes] | None:
    """The record's JSON split around its event-time value (None if it does not parse)."""
    if record.record is None:
        return None
    text = to_json({**record.record, TIME_FIELD[record.kind]: _NOW})
    head, tail = text.split(f'"{_NOW}"'.encode(), 1)
    return head, tail


def _now_json() -> bytes:
    """The current time as the JSON string `to_json` writes for it."""
    return f'"{utc_text(datetime.now(UTC))}"'.encode()


def schedule(
    impressions: list[LogRecord],
    actions: list[LogRecord],
    rate: float,
    timing: Timing,
    compression: float = 1.0,
) -> list[_Send]:
    """When (seconds from start) each record is sent."""
    if timing == "original":
        merged = _in_event_order(impressions + actions)
        return [_Send(i / rate, i, r) for i, r in enumerate(merged)]
    total = len(impressions) + len(actions)
    impression_rate = rate * len(impressions) / total if total else rate
    ordered = _in_event_order(impressions)
    sends = [_Send(i / impression_rate, i, r) for i, r in enumerate(ordered)]
    sent_at = {
        str(s.record.record["impression_id"]): s
        for s in sends
        if s.record.record is not None and s.record.record.get("impression_id") is not None
    }
    served = {k: s.record.event_ms for k, s in sent_at.items()}
    first = min((ms for ms in served.values() if ms is not None), default=0)
    span = max((ms for ms in served.values() if ms is not None), default=first) - first
    wall_per_ms = (len(ordered) / impression_rate) / span if span else 0.0
    for i, action in enumerate(actions, start=len(sends)):
        parent = sent_at.get(str((action.record or {}).get("impression_id")))
        if parent is not None and parent.record.event_ms is not None and action.event_ms:
            delay = max(0.0, (action.event_ms - parent.record.event_ms) / 1000 / compression)
            sends.append(_Send(parent.at + delay, i, action))
        else:  # orphan or malformed: where its event time falls among the impressions
            ms = action.event_ms if action.event_ms is not None else first
            sends.append(_Send(max(0.0, (ms - first) * wall_per_ms), i, action))
    return sends


def _in_event_order(records: list[LogRecord]) -> list[LogRecord]:
    """Sorted by event time; records without one stay behind the record before them."""
    keyed, last = [], 0
    for position, record in enumerate(records):
        last = record.event_ms if record.event_ms is not None else last
        keyed.append((last, position, record))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [record for _, _, record in keyed]


def replay(
    logger: EventLogger,
    impressions: list[LogRecord],
    actions: list[LogRecord],
    rate: float,
    timing: Timing = "original",
    compression: float = 1.0,
) -> ReplayStats:
    """Send every record at its scheduled time (as fast as possible when behind); then flush."""
    sends = schedule(impressions, actions, rate, timing, compression)
    if timing == "live":  # rendered up front: the send loop only splices in the time
        for item in sends:
            item.template = _stamp_template(item.record)
    heapq.heapify(sends)
    stats = ReplayStats()
    start = time.monotonic()
    while sends:
        item = heapq.heappop(sends)
        wait = start + item.at - time.monotonic()
        if wait > 0.005:  # sleeping per event (every 0.5 ms at 2,000/s) costs more than it sends
            time.sleep(wait)
        record = item.record
        payload = record.payload
        if item.template is not None:
            head, tail = item.template
            payload = head + _now_json() + tail
        logger.send(record.kind, payload, record.key)
        stats.sent[record.kind] += 1
    logger.flush()
    stats.seconds = time.monotonic() - start
    log.info("replayed %s in %.1fs (%.0f events/s)", stats.sent, stats.seconds, stats.rate)
    return stats


def load_logs(
    folder: str | Path | None, lake=None, limit: int | None = None
) -> tuple[list[LogRecord], list[LogRecord]]:
    """(impressions, actions) from a generated-logs folder or, with `lake`, its Delta tables.

    `limit` keeps the first N impressions in event-time order and only their actions.
    """
    read = (
        (lambda kind: read_lake_table(lake, kind))
        if lake is not None
        else (lambda kind: read_log_folder(folder, kind))
    )
    impressions, actions = list(read("impressions")), list(read("actions"))
    if limit is not None:
        impressions = _in_event_order(impressions)[:limit]
        kept = {str(r.record.get("impression_id")) for r in impressions if r.record}
        actions = [a for a in actions if a.record and str(a.record.get("impression_id")) in kept]
    return impressions, actions
