"""Which copy of a repeated impression `classify` keeps, on hand-made rows (fast)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

from pyspark.sql import functions as F

from freshlake.batch.classify import BuildPlan, classify
from freshlake.batch.window import TimeWindow
from freshlake.config import load_config
from freshlake.features.hashing import hash_unit
from freshlake.features.labeling import action_times
from freshlake.features.schemas import ACTION_SCHEMA, IMPRESSION_SCHEMA
from tests.conftest import REPO

WINDOW = TimeWindow(date(2026, 1, 1), date(2026, 1, 2))
SERVED = datetime(2026, 1, 1, 6, tzinfo=UTC)
NEGATIVE_RATE = 0.5


def impression(impression_id: str, request_id: str, device: str) -> dict:
    """A valid impression; copies of one id differ only in request_id and features."""
    return {
        "impression_id": impression_id,
        "request_id": request_id,
        "user_id": "u1",
        "item_id": "i1",
        "served_at": SERVED,
        "position": 1,
        "surface": "home",
        "region": "eu",
        "model_version": "m1",
        "pred_ctr": 0.1,
        "features": {"device": device},
        "extra": None,
        "source_file": None,
        "ingest_run_id": None,
        "dt": WINDOW.start,
    }


def ids_by_draw(spark, sampling) -> tuple[str, str]:
    """An impression id sampling keeps (as a negative) and one it drops."""
    ids = spark.createDataFrame([(f"imp{i}",) for i in range(40)], "impression_id string")
    draws = ids.select("impression_id", hash_unit(sampling.seed, F.col("impression_id")).alias("u"))
    rows = draws.collect()
    kept = next(r.impression_id for r in rows if r.u < NEGATIVE_RATE)
    dropped = next(r.impression_id for r in rows if r.u >= NEGATIVE_RATE)
    return kept, dropped


def test_tied_copies_resolve_the_same_way_in_any_order(spark, tmp_path):
    config = load_config(
        REPO / "conf" / "local.yaml",
        {"lake.root": str(tmp_path), "sampling.negative_rate": NEGATIVE_RATE},
    )
    kept_id, dropped_id = ids_by_draw(spark, config.sampling)
    # Copies tied on served_at, item_id, user_id and every outcome field: only the whole-row
    # hash orders them. The kept id's copies are written or duplicate, the dropped id's are
    # not_sampled or duplicate.
    rows = [
        impression(kept_id, f"r{n}", device)
        for n, device in enumerate(["phone", "tablet", "desktop"])
    ] + [impression(dropped_id, f"r{n}", device) for n, device in enumerate(["phone", "tv"])]
    actions = action_times(spark.createDataFrame([], ACTION_SCHEMA), config.labels)
    plan = BuildPlan(config, WINDOW, WINDOW.end_at + timedelta(days=1), None)

    def outcomes(order: list[dict], partitions: int) -> list[tuple]:
        df = spark.createDataFrame(order, IMPRESSION_SCHEMA).repartition(partitions)
        classified = classify(df, actions, plan)
        return sorted(
            classified.select("impression_id", "outcome", "request_id", "features").collect(),
            key=lambda r: (r.impression_id, r.outcome, r.request_id or ""),
        )

    first = outcomes(rows, 1)
    assert first == outcomes(list(reversed(rows)), 3)
    assert Counter((r.impression_id, r.outcome) for r in first) == {
        (kept_id, "written"): 1,
        (kept_id, "duplicate"): 2,
        (dropped_id, "not_sampled"): 1,
        (dropped_id, "duplicate"): 1,
    }
    (written,) = [r for r in first if r.outcome == "written"]
    assert written.request_id is not None  # the kept copy carries its whole row
