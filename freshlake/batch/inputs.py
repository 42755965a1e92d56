"""Reading the batch inputs: `impressions` and `actions` at pinned Delta versions, pruned by dt."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from freshlake import contract
from freshlake.batch.window import TimeWindow
from freshlake.config import LabelConfig
from freshlake.features.labeling import labeled_actions
from freshlake.lake import Lake

IMPRESSIONS = contract.IMPRESSIONS
ACTIONS = contract.ACTIONS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MissingInputError(RuntimeError):
    """An input table the job needs does not exist."""


def pinned_version(lake: Lake, table: str) -> int:
    """The table's latest version, to read every input at one consistent snapshot."""
    version = lake.version(table)
    if version is None:
        raise MissingInputError(
            f"table {table!r} does not exist under {lake.root}; ingest logs first "
            "(freshlake ingest / the streaming bronze ingest)"
        )
    return version


def in_window(ts: Column, window: TimeWindow) -> Column:
    """True iff the timestamp is inside `[window.start, window.end)`."""
    return (ts >= F.lit(window.start_at)) & (ts < F.lit(window.end_at))


def _between_dates(df: DataFrame, first: date, last: date) -> DataFrame:
    return df.where(F.col("dt").between(F.lit(first), F.lit(last)))


def read_impressions(lake: Lake, window: TimeWindow, version: int) -> DataFrame:
    """Impression rows of the window's `dt` partitions (rows outside `[start, end)` included)."""
    return _between_dates(lake.read(IMPRESSIONS, version), window.start, window.days[-1])


def window_rows(lake: Lake, window: TimeWindow, version: int) -> int | None:
    """How many impression rows the window's `dt` partitions hold at `version`, from the
    Delta log's per-file record counts (no data read); None when a file has no count."""
    days = {d.isoformat() for d in window.days}
    files = lake.engine.files(lake.uri(IMPRESSIONS), version)
    counts = [f.num_records for f in files if f.partition_values.get("dt") in days]
    return None if None in counts else sum(counts)


def action_time_range(window: TimeWindow, labels: LabelConfig) -> tuple[datetime, datetime]:
    """The action times that can label an impression of the window (skew and attribution)."""
    return (
        window.start_at - timedelta(seconds=labels.clock_skew_seconds),
        window.end_at + timedelta(seconds=labels.attribution_window_seconds),
    )


def read_actions(lake: Lake, window: TimeWindow, labels: LabelConfig, version: int) -> DataFrame:
    """Configured-type actions whose time can label an impression of the window."""
    first, last = action_time_range(window, labels)
    df = _between_dates(lake.read(ACTIONS, version), first.date(), last.date())
    return df.where(
        F.col("action_at").between(F.lit(first), F.lit(last))
        & F.col("action").isin(labeled_actions(labels))
    )


def action_log_end(lake: Lake, version: int, since: date) -> datetime | None:
    """The latest `action_at` in the action log (from `since` on): how far labels are known."""
    df = lake.read(ACTIONS, version).where(F.col("dt") >= F.lit(since))
    micros = df.agg(F.max(F.unix_micros("action_at"))).first()[0]
    return None if micros is None else EPOCH + timedelta(microseconds=micros)
