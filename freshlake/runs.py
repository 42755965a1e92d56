"""`JobRun`: one row per job run in the `job_runs` table (config hash, versions, counts, timings)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
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

from freshlake import contract
from freshlake.config import Config
from freshlake.lake import Lake

JOB_RUNS_TABLE = contract.JOB_RUNS

JOB_RUNS_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("job", StringType(), False),
        StructField("status", StringType(), False),  # succeeded | failed | skipped
        StructField("started_at", TimestampType(), False),
        StructField("finished_at", TimestampType(), False),
        StructField("config_hash", StringType(), False),
        StructField("code_version", StringType(), True),
        StructField("input_versions", MapType(StringType(), LongType()), True),
        StructField("output_versions", MapType(StringType(), LongType()), True),
        StructField("counts", MapType(StringType(), LongType()), True),
        StructField("timings", MapType(StringType(), DoubleType()), True),
        StructField("details", StringType(), True),  # JSON
        StructField("error", StringType(), True),
    ]
)


@lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the code, or the package version when not run from a checkout."""
    from freshlake import __version__

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{__version__}+g{sha}"
    except (OSError, subprocess.SubprocessError):
        return __version__


class JobRun:
    """Collects what a job did and records it; use `with JobRun(...) as run:`."""

    def __init__(self, job: str, config: Config, lake: Lake, run_id: str | None = None):
        self.job = job
        self.config = config
        self.lake = lake
        self.run_id = run_id or f"{job}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        self.started_at = datetime.now(UTC)
        self.input_versions: dict[str, int] = {}
        self.output_versions: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.timings: dict[str, float] = {}
        self.details: dict[str, Any] = {}
        self.status = "running"
        self.error: str | None = None

    def count(self, **counts: int) -> None:
        self.counts.update({k: int(v) for k, v in counts.items()})

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Time a step of the job into `timings[step]` (seconds)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[step] = round(time.perf_counter() - start, 3)

    def __enter__(self) -> JobRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None:
            self.status, self.error = "failed", f"{exc_type.__name__}: {exc}"
        elif self.status == "running":
            self.status = "succeeded"
        self.record()

    def as_row(self) -> dict[str, Any]:
        finished = datetime.now(UTC)
        self.timings.setdefault("total", round((finished - self.started_at).total_seconds(), 3))
        return {
            "run_id": self.run_id,
            "job": self.job,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": finished,
            "config_hash": self.config.config_hash(),
            "code_version": code_version(),
            "input_versions": self.input_versions,
            "output_versions": self.output_versions,
            "counts": self.counts,
            "timings": self.timings,
            "details": json.dumps(self.details, default=str, sort_keys=True),
            "error": self.error,
        }

    def record(self) -> None:
        """Append this run's row to `job_runs` from the driver (Arrow, no Spark job)."""
        self.lake.append_arrow(JOB_RUNS_TABLE, job_runs_arrow([self.as_row()]))


def job_runs_arrow(rows: list[dict[str, Any]]) -> pa.Table:
    """`job_runs` rows (as `JobRun.as_row` gives them) as an Arrow table of its schema."""
    schema = to_arrow_schema(JOB_RUNS_SCHEMA, timezone="UTC")
    maps = [f.name for f in JOB_RUNS_SCHEMA.fields if isinstance(f.dataType, MapType)]
    records = [
        {**row, **{m: None if row[m] is None else list(row[m].items()) for m in maps}}
        for row in rows
    ]
    return pa.Table.from_pylist(records, schema=schema)


def latest_run_details(lake: Lake, job: str) -> dict[str, Any] | None:
    """The `details` of the newest succeeded run of `job` in `job_runs`, or None."""
    if not lake.exists(JOB_RUNS_TABLE):
        return None
    from pyspark.sql import functions as F

    runs = (
        lake.read(JOB_RUNS_TABLE)
        .where((F.col("job") == job) & (F.col("status") == "succeeded"))
        .orderBy(F.col("finished_at").desc())
        .select("details")
        .limit(1)
        .collect()
    )
    return json.loads(runs[0].details or "{}") if runs else None
