"""File ingest: impression and action log files into Delta, one idempotent source per file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import SparkSession

from freshlake.config import Config
from freshlake.features.validation import CONTRACTS
from freshlake.ingest.loader import QUARANTINE_TABLE, IngestSummary, ingest_source
from freshlake.ingest.sources import list_input_files, read_raw_records
from freshlake.lake import open_lake
from freshlake.runs import JobRun

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
    lake = open_lake(config, spark)
    with JobRun(JOB, config, lake) as run:
        summary = IngestSummary(run.run_id)
        with run.timed("ingest"):
            for kind, kind_files in files.items():
                for file in kind_files:
                    summary.outcomes.append(
                        ingest_source(
                            lake,
                            config,
                            CONTRACTS[kind],
                            read_raw_records(spark, file),
                            source_file=file.path,
                            app_id=source_app_id(kind, file.fingerprint),
                            run_id=run.run_id,
                            now=run.started_at,
                            clock=file.modified_at,
                        )
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
