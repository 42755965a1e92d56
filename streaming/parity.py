"""Batch/stream parity: `fresh_examples` (joiner) against `examples` (batch builder), row by row.

Both are built from the same logs with the same `features/` functions, so for every impression
whose label is final on both sides they must agree on every column, except those that differ by
design: `source`, `run_id`, and `split` (in `split.mode=time` fresh rows are all `train`), plus
`recency_weight` / `weight` when recency is on (measured from the commit time vs the window end).

The comparable impressions: served inside the compared days, with the attribution window closed
before `until` (default: the earlier of the joiner's last watermark and the batch build's
`actions_until`), since the stream writes positives before their window closes and the batch
leaves immature impressions out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, FloatType, MapType

from freshlake import contract
from freshlake.config import Config
from freshlake.lake import Lake
from freshlake.runs import latest_run_details
from freshlake.streaming.join_plan import JOINER_QUERY
from freshlake.streaming.join_sink import FRESH_EXAMPLES
from freshlake.streaming.metrics import METRICS_TABLE

EXAMPLES = contract.EXAMPLES
NOT_COMPARED = ("source", "run_id", "split")
RECENCY_COLUMNS = ("recency_weight", "weight")
TOLERANCE = 1e-9


@dataclass
class ParityReport:
    until: str | None
    days: list[str]
    batch_rows: int = 0
    stream_rows: int = 0
    compared_rows: int = 0
    only_in_batch: list[str] = field(default_factory=list)
    only_in_stream: list[str] = field(default_factory=list)
    mismatches: dict[str, int] = field(default_factory=dict)  # column -> rows that differ
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few differing values
    columns_compared: list[str] = field(default_factory=list)
    columns_not_compared: list[str] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return len(self.only_in_batch) + len(self.only_in_stream) + sum(self.mismatches.values())

    def as_json(self) -> str:
        return json.dumps({**asdict(self), "differences": self.differences}, indent=2, default=str)


def joiner_watermark(lake: Lake, query: str = JOINER_QUERY) -> datetime | None:
    """The joiner's latest event-time watermark recorded in `stream_metrics`."""
    if not lake.exists(METRICS_TABLE):
        return None
    return (
        lake.read(METRICS_TABLE).where(F.col("query") == query).agg(F.max("watermark")).first()[0]
    )


def batch_actions_until(lake: Lake) -> datetime | None:
    """`actions_until` of the latest successful build-training-set run (job_runs)."""
    text = (latest_run_details(lake, "build-training-set") or {}).get("actions_until")
    return datetime.fromisoformat(text) if text else None


def compare(
    lake: Lake,
    config: Config,
    days: list[date] | None = None,
    until: datetime | None = None,
    max_examples: int = 20,
) -> ParityReport:
    """Compare the two tables over `days` (default: every dt in examples); see module doc."""
    if until is None:
        found = (joiner_watermark(lake), batch_actions_until(lake))
        bounds = [_utc(t) for t in found if t is not None]
        until = min(bounds) if bounds else None
    batch, stream = lake.read(EXAMPLES), lake.read(FRESH_EXAMPLES)
    if days is None:
        days = sorted(r.dt for r in batch.select("dt").distinct().collect())
    until = _utc(until) if until is not None else None
    report = ParityReport(until=until.isoformat() if until else None, days=[str(d) for d in days])
    batch, stream = (_comparable(df, days, until, config) for df in (batch, stream))

    skipped = list(NOT_COMPARED)
    if config.recency.half_life_days is not None:
        skipped += RECENCY_COLUMNS
    columns = [c for c in batch.columns if c not in skipped and c != "impression_id"]
    report.columns_compared, report.columns_not_compared = columns, skipped

    types = {f.name: f.dataType for f in batch.schema}
    b = batch.select(
        "impression_id", *[_comparable_value(c, types[c]).alias(f"b_{c}") for c in columns]
    )
    s = stream.select(
        "impression_id", *[_comparable_value(c, types[c]).alias(f"s_{c}") for c in columns]
    )
    joined = b.withColumn("_in_b", F.lit(True)).join(
        s.withColumn("_in_s", F.lit(True)), "impression_id", "full_outer"
    )
    differs = {c: ~_same(F.col(f"b_{c}"), F.col(f"s_{c}"), types[c]) for c in columns}
    both = F.col("_in_b").isNotNull() & F.col("_in_s").isNotNull()
    summary = joined.agg(
        F.sum(F.col("_in_b").isNotNull().cast("int")).alias("batch_rows"),
        F.sum(F.col("_in_s").isNotNull().cast("int")).alias("stream_rows"),
        F.sum(both.cast("int")).alias("compared_rows"),
        *[F.sum((both & differs[c]).cast("int")).alias(c) for c in columns],
    ).first()
    report.batch_rows = summary["batch_rows"] or 0
    report.stream_rows = summary["stream_rows"] or 0
    report.compared_rows = summary["compared_rows"] or 0
    report.mismatches = {c: summary[c] for c in columns if summary[c]}
    report.only_in_batch = _ids(joined.where(F.col("_in_s").isNull()))
    report.only_in_stream = _ids(joined.where(F.col("_in_b").isNull()))
    for column in report.mismatches:
        for row in joined.where(both & differs[column]).limit(max_examples).collect():
            report.examples.append(
                {
                    "impression_id": row.impression_id,
                    "column": column,
                    "batch": row[f"b_{column}"],
                    "stream": row[f"s_{column}"],
                }
            )
    return report


def _utc(moment: datetime) -> datetime:
    """Spark hands back naive UTC datetimes; job_runs text may carry an offset."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _comparable(
    df: DataFrame, days: list[date], until: datetime | None, config: Config
) -> DataFrame:
    df = df.where(F.col("dt").isin(days))
    if until is not None:
        closes = timedelta(seconds=config.labels.attribution_window_seconds)
        df = df.where(F.col("served_at") < F.lit((until - closes).astimezone(UTC)))
    return df


def _comparable_value(column: str, data_type) -> Column:
    """Maps become sorted entry arrays (Spark cannot compare maps)."""
    if isinstance(data_type, MapType):
        return F.array_sort(F.map_entries(F.col(column)))
    return F.col(column)


def _same(a: Column, b: Column, data_type) -> Column:
    if isinstance(data_type, DoubleType | FloatType):
        return (a.isNull() & b.isNull()) | (
            F.abs(a - b) <= F.lit(TOLERANCE) * F.greatest(F.lit(1.0), F.abs(a))
        )
    if isinstance(data_type, ArrayType | MapType):
        return F.coalesce(a == b, a.isNull() & b.isNull())
    return a.eqNullSafe(b)


def _ids(df: DataFrame, limit: int = 10_000) -> list[str]:
    return sorted(r.impression_id for r in df.select("impression_id").limit(limit).collect())
