"""The Databricks job definition validates and calls real freshlake commands with real flags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from databricks.bundles.jobs import Job

from freshlake.cli import COMMANDS, build_parser

BUNDLE = Path(__file__).resolve().parent.parent / "deploy" / "databricks" / "databricks.yml"


def bundle_jobs() -> dict[str, dict]:
    return yaml.safe_load(BUNDLE.read_text())["resources"]["jobs"]


def test_bundle_jobs_validate_against_the_bundle_schema():
    for name, spec in bundle_jobs().items():
        job = Job.from_dict(spec)  # raises on unknown or mistyped fields
        assert job.tasks, f"job {name} has no tasks"


@pytest.mark.parametrize(
    "task", next(iter(bundle_jobs().values()))["tasks"], ids=lambda t: t["task_key"]
)
def test_every_task_runs_a_freshlake_command_with_valid_flags(task):
    wheel = task["python_wheel_task"]
    assert (wheel["package_name"], wheel["entry_point"]) == ("freshlake", "freshlake")
    params = [re.sub(r"\$\{[^}]+\}|\{\{[^}]+\}\}", "2026-01-08", p) for p in wheel["parameters"]]
    assert params[0] in COMMANDS
    build_parser().parse_args(params)  # exits (SystemExit) on an unknown flag


def test_bundle_task_graph_is_ingest_to_train():
    tasks = {t["task_key"]: t for t in next(iter(bundle_jobs().values()))["tasks"]}
    order, key = [], "train"
    while key:
        order.append(key)
        deps = tasks[key].get("depends_on", [])
        key = deps[0]["task_key"] if deps else None
    assert order[::-1] == ["ingest", "item_stats", "build_training_set", "train"]
