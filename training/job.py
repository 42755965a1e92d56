"""A training job: the config, the table pinned at a version and the output folder."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from freshlake.config import Config
from freshlake.training.snapshot import Snapshot, added_since, open_snapshot

JOB_FILE = "job.json"


@dataclass
class TrainJob:
    """What to train on and where to write; saved as `job.json` in the output folder."""

    config: dict[str, Any]  # the full freshlake config, as JSON
    table: str
    table_uri: str
    version: int
    out_dir: str
    since_version: int | None = None  # train only on files added after this version
    warm_start: str | None = None  # a model folder to start from
    start_date: str | None = None  # dt partitions in [start_date, end_date)
    end_date: str | None = None
    # Record which `audit_column` values each step consumed (audits, exactly-once tests).
    audit_column: str | None = None

    def save(self) -> Path:
        path = Path(self.out_dir) / JOB_FILE
        path.write_text(json.dumps(asdict(self), indent=2, default=str) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainJob:
        return cls(**json.loads(Path(path).read_text()))

    def parsed_config(self) -> Config:
        return Config.model_validate(self.config)


def job_snapshot(job: TrainJob, config: Config) -> Snapshot:
    """The pinned snapshot, narrowed to the job's dates and to files added since a version."""
    options = config.lake.storage_options
    snapshot = open_snapshot(job.table_uri, job.version, options)
    snapshot = snapshot.between_dates(
        date.fromisoformat(job.start_date) if job.start_date else None,
        date.fromisoformat(job.end_date) if job.end_date else None,
    )
    if job.since_version is not None:
        snapshot = added_since(snapshot, job.since_version, options)
    return snapshot
