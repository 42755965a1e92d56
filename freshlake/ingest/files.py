"""File ingest: impression and action log files into Delta, one idempotent source per file.

A run commits once per table; each commit carries one app transaction per file it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from pyspark.sql import SparkSession

from freshlake.config import Config
from freshlake.features.validation import CONTRACTS
from freshlake.ingest.loader import (
    QUARANTINE_TABLE,
    SCAN_KEY,
    IngestSummary,
    SharedScan,
    Source,
    ingest_sources,
)
from freshlake.ingest.sources import (
    NANOS_AS_LONG,
    InputFile,
    first_lines,
    list_input_files,
    parquet_layout,
    read_csv_records,
    read_json_lines,
    read_parquet_records,
    read_raw_records,
)
from freshlake.lake import open_lake
from freshlake.runs import JobRun
from freshlake.spark_compat import session_conf

JOB = "ingest"


def logs_layout(directory: str) -> dict[str, list[str]]:
    """The inputs of a generated-logs folder: `DIR/impressions/`, `DIR/actions/`."""
    base = directory.rstrip("/")
    if "://" not in base and not Path(base).is_dir():
        raise FileNotFoundError(f"--logs {directory}: not a directory")
    return {"impressions": [f"{base}/impressions"], "actions": [f"{base}/actions"]}


def source_app_id(kind: str, fingerprint: str) -> str:
    """The app transaction id that marks a file as ingested into a table."""
    return f"freshlake-ingest-{kind}-{fingerprint}"


def file_source(
    spark: SparkSession, kind: str, file: InputFile, first_line: str | None = None
) -> Source:
    """A log file as a source of `kind` records, identified by (path, size, modification time).

    Its modification time is the clock its event times are judged against, so a re-run after a
    crash classifies every record exactly as the first attempt did. `first_line`: a CSV file's
    header, when already read (`first_lines`).
    """
    return Source(
        CONTRACTS[kind],
        file.path,
        source_app_id(kind, file.fingerprint),
        file.modified_at,
        partial(read_raw_records, spark, file),
        shared_scan(spark, file, first_line),
    )


def shared_scan(
    spark: SparkSession, file: InputFile, first_line: str | None = None
) -> SharedScan | None:
    """How a file is read together with others of its kind: every JSON Lines file in one scan,
    Parquet files in one scan per layout (columns and types), CSV files in one scan per header
    line (`first_line`); None: a read of its own (a CSV file whose header was not read, a file
    whose listing or footer is out of reach)."""
    if file.scan_key is None:
        return None
    if file.format == "jsonl":
        return SharedScan(
            "jsonl", partial(read_json_lines, spark, file_column=SCAN_KEY), file.scan_key
        )
    if file.format == "csv" and first_line is not None:
        return SharedScan(
            f"csv {first_line}",
            partial(read_csv_records, spark, file_column=SCAN_KEY, header_line=first_line),
            file.scan_key,
        )
    if file.format == "parquet" and (layout := parquet_layout(file.path)) is not None:
        return SharedScan(
            f"parquet {layout}",
            partial(read_parquet_records, spark, file_column=SCAN_KEY),
            file.scan_key,
        )
    return None


def ingest_files(
    config: Config,
    spark: SparkSession,
    inputs: dict[str, Sequence[str]],
    fmt: str = "auto",
) -> IngestSummary:
    """Ingest files by kind (`{"impressions": [...], "actions": [...]}`), recorded in job_runs.

    Paths may be files, globs or directories, local or any URL Spark reads. Files already
    ingested (same path, size and modification time) are skipped table by table.
    """
    unknown = set(inputs) - set(CONTRACTS)
    if unknown:
        raise ValueError(f"unknown record kinds {sorted(unknown)}; expected {sorted(CONTRACTS)}")
    files = {kind: list_input_files(spark, paths, fmt) for kind, paths in inputs.items() if paths}
    # Every CSV file's header line in one job: files of one header are read in one scan.
    headers = first_lines(
        spark, [f for found in files.values() for f in found if f.format == "csv"]
    )
    sources = [
        file_source(spark, kind, file, headers.get(file.path))
        for kind, found in files.items()
        for file in found
    ]
    lake = open_lake(config, spark)
    with JobRun(JOB, config, lake) as run:
        summary = IngestSummary(run.run_id)
        # Parquet nanosecond timestamps are read as numbers and converted (read_raw_records).
        parquet = any(f.format == "parquet" for found in files.values() for f in found)
        settings = {NANOS_AS_LONG: "true"} if parquet else {}
        with run.timed("ingest"), session_conf(spark, settings):
            summary.outcomes = ingest_sources(
                lake, config, sources, run_id=run.run_id, now=run.started_at
            )
        finish_run(run, summary, [*files, QUARANTINE_TABLE])
    return summary


def finish_run(run: JobRun, summary: IngestSummary, tables: Sequence[str]) -> None:
    """Record the summary's counts, per-source outcomes and table versions in the job run."""
    summary.versions = {
        t: v for t in dict.fromkeys(tables) if (v := run.lake.version(t)) is not None
    }
    run.output_versions.update(summary.versions)
    run.count(**summary.counts())
    run.details["sources"] = [
        {
            "source_file": o.source_file,
            "kind": o.kind,
            "records": o.records,
            "valid": o.valid,
            "quarantined": o.quarantined,
            "skipped_tables": o.skipped_tables,
        }
        for o in summary.outcomes
    ]
