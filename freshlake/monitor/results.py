"""Check results: the structured outcome of one monitor check, and the `monitor_alerts` table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Literal

from pyspark.sql import functions as F
from pyspark.sql.types import (
    DateType,
    DoubleType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from freshlake.lake import Lake

MONITOR_TABLE = "monitor_alerts"
OK, ALERT, SKIPPED = "ok", "alert", "skipped"
Status = Literal["ok", "alert", "skipped"]

# One row per check result of a monitor run (ok and skipped too, so quiet runs are visible).
MONITOR_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("checked_at", TimestampType(), False),
        StructField("name", StringType(), False),  # source_share | volume | ctr | skew | ...
        StructField("subject", StringType(), False),  # region=eu, f_hour, examples, ...
        StructField("status", StringType(), False),  # ok | alert | skipped
        StructField("value", DoubleType(), True),
        StructField("threshold", DoubleType(), True),
        StructField("detail", StringType(), True),
        StructField("day", DateType(), True),  # the day the check looked at, if any
        StructField("dt", DateType(), False),  # date of checked_at (partition)
    ]
)


@dataclass(frozen=True)
class CheckResult:
    """One check on one subject: `status` is ok, alert or skipped (with the reason in detail)."""

    name: str
    subject: str
    status: Status
    value: float | None
    threshold: float | None
    detail: str
    day: date | None = None

    @property
    def alert(self) -> bool:
        return self.status == ALERT


def skipped(name: str, subject: str, reason: str, day: date | None = None) -> CheckResult:
    """A check that could not run (missing table, too little history, ...)."""
    return CheckResult(name, subject, SKIPPED, None, None, reason, day)


def judged(
    name: str,
    subject: str,
    value: float,
    threshold: float,
    firing: bool,
    detail: str,
    day: date | None = None,
) -> CheckResult:
    """An ok or alert result for a measured value."""
    return CheckResult(name, subject, ALERT if firing else OK, value, threshold, detail, day)


def write_results(
    lake: Lake, results: Sequence[CheckResult], run_id: str, checked_at: datetime
) -> int | None:
    """Append a run's results to `monitor_alerts`; returns the table version (None: no rows)."""
    if not results:
        return None
    rows = [
        {**asdict(r), "run_id": run_id, "checked_at": checked_at, "dt": checked_at.date()}
        for r in results
    ]
    df = lake.spark.createDataFrame(
        [{f.name: row[f.name] for f in MONITOR_SCHEMA} for row in rows], MONITOR_SCHEMA
    )
    return lake.write(MONITOR_TABLE, df, partition_by=["dt"]).version


def latest_results(lake: Lake) -> list[CheckResult] | None:
    """The results of the most recent monitor run in `monitor_alerts`, or None when there is none."""
    if not lake.exists(MONITOR_TABLE):
        return None
    table = lake.read(MONITOR_TABLE)
    last = table.agg(F.max("checked_at").alias("at")).first()["at"]
    if last is None:
        return None
    latest_run = table.where(F.col("checked_at") == last).select("run_id").first()["run_id"]
    rows = table.where(F.col("run_id") == latest_run).orderBy("name", "subject").collect()
    fields = CheckResult.__dataclass_fields__
    return [CheckResult(**{k: row[k] for k in fields}) for row in rows]


def format_results(results: Sequence[CheckResult]) -> str:
    """A fixed-width text table of results, alerts first."""
    order = {ALERT: 0, OK: 1, SKIPPED: 2}
    lines = [
        f"{'status':7s} {'check':14s} {'subject':28s} {'value':>10s} {'threshold':>10s}  detail"
    ]
    for r in sorted(results, key=lambda r: (order[r.status], r.name, r.subject)):
        lines.append(
            f"{r.status:7s} {r.name:14s} {r.subject[:28]:28s} {_num(r.value):>10s} "
            f"{_num(r.threshold):>10s}  {r.detail}"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
