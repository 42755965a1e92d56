"""Freshness: age of the last `fresh_examples` commit and of the model (its card's created_at)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import functions as F

from freshlake import contract
from freshlake.config import MonitorConfig
from freshlake.lake import Lake
from freshlake.monitor.results import CheckResult, judged, skipped

FRESH_EXAMPLES = contract.FRESH_EXAMPLES
MODEL_CARD = "model_card.json"  # written by `freshlake train` (training/artifact.py)


def last_commit_time(lake: Lake, table: str) -> datetime:
    """When the table's latest Delta version was committed (UTC)."""
    return lake.last_commit(table).committed_at


def fresh_examples_age(lake: Lake, cfg: MonitorConfig, now: datetime) -> CheckResult:
    """Minutes since `fresh_examples` last received rows; alert above max_fresh_age_minutes."""
    if not lake.exists(FRESH_EXAMPLES):
        return skipped("freshness", FRESH_EXAMPLES, "no fresh_examples table (streaming not run)")
    committed = last_commit_time(lake, FRESH_EXAMPLES)
    newest = lake.read(FRESH_EXAMPLES).agg(F.max("served_at")).first()[0]
    age = (now - committed).total_seconds() / 60
    detail = f"last commit {committed:%Y-%m-%d %H:%M:%S}Z, newest served_at {newest}"
    limit = cfg.max_fresh_age_minutes
    return judged("freshness", FRESH_EXAMPLES, age, limit, age > limit, detail)


def model_age(model_dir: str | Path | None, cfg: MonitorConfig, now: datetime) -> CheckResult:
    """Hours since the model in `model_dir` was created; alert above max_model_age_hours."""
    if model_dir is None:
        return skipped("model_age", "model", "no --model given")
    card_path = Path(model_dir) / MODEL_CARD
    if not card_path.exists():
        return skipped("model_age", str(model_dir), f"no {MODEL_CARD}")
    card = json.loads(card_path.read_text())
    created = datetime.fromisoformat(card["created_at"])
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    age = (now - created).total_seconds() / 3600
    data = card.get("data", {})
    detail = f"created {card['created_at']} on {data.get('table')} v{data.get('version')}"
    limit = cfg.max_model_age_hours
    return judged("model_age", str(model_dir), age, limit, age > limit, detail)
