"""Per micro-batch metrics of the streaming queries: JSON lines and the `stream_metrics` table.

Each micro-batch's sink (`foreachBatch`) reports what it wrote (`BatchReport`: rows per table,
commit time, action -> commit latencies of positives); Spark's progress of the same batch id
adds input rows, watermark, state rows and duration. `MetricsRecorder.drain(query)` joins the two
and appends them to the JSON-lines log and the Delta table, so freshness is queryable:

    SELECT batch_id, latency_p50_s, latency_p99_s FROM stream_metrics WHERE query = 'joiner'
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import (
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

log = logging.getLogger(__name__)

METRICS_TABLE = "stream_metrics"

METRICS_SCHEMA = StructType(
    [
        StructField("query", StringType(), False),
        StructField("query_id", StringType(), True),
        StructField("batch_id", LongType(), False),
        StructField("committed_at", TimestampType(), True),
        StructField("input_rows", LongType(), True),
        StructField("rows_written", MapType(StringType(), LongType()), True),
        StructField("watermark", TimestampType(), True),
        StructField("state_rows", LongType(), True),
        StructField("late_rows_dropped", LongType(), True),
        StructField("duplicates_dropped", LongType(), True),
        StructField("batch_duration_s", DoubleType(), True),
        StructField("positives", LongType(), True),
        StructField("latency_p50_s", DoubleType(), True),
        StructField("latency_p99_s", DoubleType(), True),
        StructField("latency_max_s", DoubleType(), True),
        StructField("dt", StringType(), False),
    ]
)


@dataclass
class BatchReport:
    """What one micro-batch's sink did."""

    batch_id: int
    committed_at: datetime
    rows_written: dict[str, int] = field(default_factory=dict)
    skipped: bool = False  # a replayed batch whose writes were already committed
    late_rows_dropped: int = 0  # dropped by the sink as too late (Spark's operators add theirs)
    duplicates_dropped: int = 0  # re-sent impressions and actions, repeated clicks
    # seconds from each positive's first action to the commit of its example
    latencies_s: list[float] = field(default_factory=list)


def quantile(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class MetricsRecorder:
    """Collects sink reports and Spark progress; writes them once both are known."""

    def __init__(
        self,
        query_name: str,
        log_path: str | Path | None,
        lake=None,
        table_every_s: float = 30.0,
    ):
        self.query_name = query_name
        self.log_path = Path(log_path) if log_path else None
        self.lake = lake
        # Rows reach the Delta table in groups (one commit per `table_every_s`), JSON at once.
        self.table_every_s = table_every_s
        self._pending_table_rows: list[dict[str, Any]] = []
        self._last_table_write = time.monotonic()
        self._reports: dict[int, BatchReport] = {}
        self._lock = threading.Lock()
        self._columns_checked = False
        # Reports of earlier runs in the spool were recorded by those runs.
        spool = Path(self.spool_path) if self.spool_path else None
        self._spool_offset = spool.stat().st_size if spool and spool.exists() else 0

    def report(self, report: BatchReport) -> None:
        """Called by the sink after it committed a batch."""
        with self._lock:
            self._reports[report.batch_id] = report

    def __reduce__(self):
        # Through Spark Connect the sink runs pickled in a Python process of the server: there
        # it reports to a spool file this recorder reads in `drain`.
        return ReportSpool, (self.spool_path,)

    @property
    def spool_path(self) -> str | None:
        """Where a sink running in another process appends its reports (JSON lines)."""
        return f"{self.log_path}.sink-reports" if self.log_path else None

    def _read_spool(self) -> None:
        if self.spool_path is None or not Path(self.spool_path).exists():
            return
        with open(self.spool_path, "rb") as spool:
            spool.seek(self._spool_offset)
            text = spool.read()
        complete = text[: text.rfind(b"\n") + 1]
        self._spool_offset += len(complete)
        for line in complete.decode().splitlines():
            self.report(ReportSpool.parse(line))

    def drain(self, query, final: bool = False) -> list[dict[str, Any]]:
        """Record every batch whose sink report and progress both arrived; return the rows."""
        progress = {p["batchId"]: p for p in (query.recentProgress or [])}
        self._read_spool()
        with self._lock:
            ready = [b for b in sorted(self._reports) if b in progress or final]
            reports = [self._reports.pop(b) for b in ready]
        rows = [self._row(r, progress.get(r.batch_id), str(query.id)) for r in reports]
        self._write_log(rows)
        self._pending_table_rows.extend(rows)
        due = time.monotonic() - self._last_table_write >= self.table_every_s
        if self._pending_table_rows and (final or due):
            self._write_table(self._pending_table_rows)
            self._pending_table_rows = []
            self._last_table_write = time.monotonic()
        return rows

    def _row(self, report: BatchReport, progress: dict | None, query_id: str) -> dict[str, Any]:
        progress = progress or {}
        watermark = (progress.get("eventTime") or {}).get("watermark")
        states = progress.get("stateOperators") or []
        lat = report.latencies_s
        return {
            "query": self.query_name,
            "query_id": query_id,
            "batch_id": report.batch_id,
            "committed_at": report.committed_at,
            "input_rows": _input_rows(progress),
            "rows_written": report.rows_written,
            "watermark": _parse_time(watermark),
            "state_rows": sum(s.get("numRowsTotal", 0) for s in states) if states else None,
            "late_rows_dropped": report.late_rows_dropped
            + sum(s.get("numRowsDroppedByWatermark", 0) for s in states),
            "duplicates_dropped": report.duplicates_dropped,
            "batch_duration_s": (progress.get("durationMs") or {}).get("triggerExecution", 0) / 1000
            if progress
            else None,
            "positives": len(lat),
            "latency_p50_s": quantile(lat, 0.5),
            "latency_p99_s": quantile(lat, 0.99),
            "latency_max_s": max(lat) if lat else None,
            "dt": report.committed_at.date().isoformat(),
            "skipped": report.skipped,
            "latencies_s": [round(x, 3) for x in lat],
        }

    def _write_log(self, rows: list[dict[str, Any]]) -> None:
        if self.log_path is not None and rows:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as out:
                for row in rows:
                    out.write(json.dumps(row, default=_json_default) + "\n")

    def _write_table(self, rows: list[dict[str, Any]]) -> None:
        """Append the rows in one commit, each batch of a query once: the commit carries an app
        transaction (`stream_metrics-<query id>`, version = its newest batch id), and batches at
        or below the version already committed (a batch Spark replays after a restart, whose
        sink skipped it) are left out."""
        if self.lake is not None:
            by_query: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                by_query.setdefault(row["query_id"], []).append(row)
            for query_id, query_rows in by_query.items():
                self._append_once(query_id, query_rows)

    def _append_once(self, query_id: str, rows: list[dict[str, Any]]) -> None:
        app_id = f"{METRICS_TABLE}-{query_id}"
        if self.lake.exists(METRICS_TABLE):
            done = self.lake.transaction_version(METRICS_TABLE, app_id)
            if done is not None:
                rows = [row for row in rows if row["batch_id"] > done]
        if rows:
            schema = to_arrow_schema(METRICS_SCHEMA, timezone="UTC")
            records = [
                {
                    **{c: row[c] for c in schema.names},
                    "rows_written": list(row["rows_written"].items()),
                }
                for row in rows
            ]
            table = pa.Table.from_pylist(records, schema=schema)
            if not self._columns_checked:
                self._add_new_columns(schema)
                self._columns_checked = True
            self.lake.append_arrow(
                METRICS_TABLE,
                table,
                partition_by=["dt"],
                app_id=app_id,
                app_version=max(row["batch_id"] for row in rows),
            )

    def _add_new_columns(self, schema: pa.Schema) -> None:
        """A table an older freshlake created lacks newer (nullable) metrics: add them (once
        per recorder; its own writes keep the schema)."""
        if not self.lake.exists(METRICS_TABLE):
            return
        have = set(self.lake.arrow_schema(METRICS_TABLE).names)
        missing = [f for f in schema if f.name not in have]
        if missing:
            log.info("adding %s to %s", [f.name for f in missing], METRICS_TABLE)
            self.lake.add_columns(METRICS_TABLE, missing)


class ReportSpool:
    """A `MetricsRecorder` as a sink in another process sees it: each report is one JSON line
    appended to the recorder's spool file (or dropped, with a warning, when it has none)."""

    def __init__(self, path: str | None):
        self.path = path

    def report(self, report: BatchReport) -> None:
        if self.path is None:
            log.warning("batch %d: no metrics log to report to", report.batch_id)
            return
        line = json.dumps(asdict(report), default=_json_default) + "\n"
        with open(self.path, "a") as spool:
            spool.write(line)

    @staticmethod
    def parse(line: str) -> BatchReport:
        fields = json.loads(line)
        fields["committed_at"] = datetime.fromisoformat(fields["committed_at"])
        return BatchReport(**fields)


def read_metrics_log(path: str | Path) -> list[dict[str, Any]]:
    """The JSON-lines metrics of a query (for benchmarks and tests)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _input_rows(progress: dict) -> int | None:
    """A progress's input rows; through Spark Connect its JSON leaves the total out and the
    progress object sums its sources."""
    rows = progress.get("numInputRows")
    return getattr(progress, "numInputRows", None) if rows is None else rows


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(type(value).__name__)
