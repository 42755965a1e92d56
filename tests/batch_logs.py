"""Small synthetic impressions/actions Delta tables with known truth, for the batch builder tests.

Pure numpy: every count the tests compare against (impressions and attributed clicks per item,
which rows are duplicates, invalid, immature...) is known from the generating arrays, never
recomputed with the builder's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from freshlake.features.schemas import ACTION_SCHEMA, IMPRESSION_SCHEMA

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ATTRIBUTION_S = 3600
SKEW_S = 60


@dataclass
class SyntheticLogs:
    """The generated rows and their truth."""

    impressions: pa.Table
    actions: pa.Table
    truth: pd.DataFrame  # one row per unique impression: item_id, served_at, clicked, liked, ...
    items: pd.DataFrame  # item_id, true_ctr (probability of an attributed click)
    duplicate_of: np.ndarray  # truth row index of every duplicate copy
    invalid: int
    misdated: int


def _timestamps(seconds: np.ndarray) -> pa.Array:
    return pa.array((seconds * 1_000_000).astype(np.int64), pa.int64()).cast(
        pa.timestamp("us", "UTC")
    )


def generate(
    n: int,
    start: date,
    days: int,
    items: int = 300,
    seed: int = 1,
    late_share: float = 0.1,
    duplicate_share: float = 0.0,
    invalid_share: float = 0.0,
    misdated: int = 0,
) -> SyntheticLogs:
    """`n` unique impressions over `days` days from `start`, Zipf item popularity, per-item CTR.

    A click happens with the item's base CTR; a `late_share` of clicks come after the
    attribution window (so they must not count). Likes follow a third of clicks, before them.
    Duplicates are exact copies; invalid rows are extra rows with pred_ctr out of range;
    `misdated` extra rows sit in the first `dt` partition but were served the day before.
    """
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 1.1
    item_idx = rng.choice(items, size=n, p=popularity / popularity.sum())
    base_ctr = rng.uniform(0.03, 0.25, size=items)
    t0 = datetime.combine(start, datetime.min.time(), tzinfo=UTC).timestamp()
    served = t0 + rng.uniform(0, days * 86_400, size=n).round(3)
    clicks = rng.random(n) < base_ctr[item_idx]
    late = rng.random(n) < late_share
    delay = np.where(
        late, rng.uniform(ATTRIBUTION_S + 5, 3 * ATTRIBUTION_S, n), rng.exponential(300, n)
    )
    delay = np.minimum(delay, np.where(late, np.inf, ATTRIBUTION_S - 1))
    likes = clicks & ~late & (rng.random(n) < 1 / 3)
    ids = np.array([f"imp{i:08d}" for i in range(n)], dtype=object)
    item_ids = np.array([f"item{j:04d}" for j in range(items)], dtype=object)[item_idx]
    user_ids = np.array([f"user{u:05d}" for u in rng.integers(0, 5000, n)], dtype=object)
    position = rng.integers(1, 6, n)
    hours = ((served % 86_400) // 3600).astype(int)
    devices = np.array(["ios", "android", "web"], dtype=object)[rng.integers(0, 3, n)]
    queries = np.array(["red shoes", "blue running shoes", "", "cheap red hat"], dtype=object)
    query = queries[rng.integers(0, len(queries), n)]
    pred_ctr = rng.uniform(0, 0.3, n)

    truth = pd.DataFrame(
        {
            "impression_id": ids,
            "item_id": item_ids,
            "user_id": user_ids,
            "served_at": served,
            "clicked": clicks & ~late,
            "liked": likes,
            "first_click_at": np.where(clicks & ~late, served + delay, np.nan),
        }
    )
    imp_rows = np.arange(n)
    dup_rows = rng.choice(n, size=int(n * duplicate_share), replace=False)
    bad_rows = rng.choice(n, size=int(n * invalid_share), replace=False)
    mis_rows = rng.choice(n, size=misdated, replace=False)
    rows = np.concatenate([imp_rows, dup_rows, bad_rows, mis_rows])
    kind = np.repeat([0, 1, 2, 3], [n, len(dup_rows), len(bad_rows), misdated])
    bad, mis = kind == 2, kind == 3
    row_ids = ids[rows].copy()
    row_ids[bad] = np.array([f"bad{i:08d}" for i in range(bad.sum())], dtype=object)
    row_ids[mis] = np.array([f"mis{i:08d}" for i in range(misdated)], dtype=object)
    features = [
        [("device", devices[r]), ("hour", str(hours[r])), ("query", query[r])] for r in rows
    ]
    served_rows = np.where(mis, t0 - 3600.0, served[rows])
    dt_rows = _timestamps(np.where(mis, t0, served_rows)).cast(pa.date32())
    impressions = pa.table(
        {
            "impression_id": pa.array(row_ids, pa.string()),
            "request_id": pa.array(row_ids, pa.string()),
            "user_id": pa.array(user_ids[rows], pa.string()),
            "item_id": pa.array(item_ids[rows], pa.string()),
            "served_at": _timestamps(served_rows),
            "position": pa.array(position[rows].astype(np.int32)),
            "surface": pa.array(np.full(len(rows), "home", dtype=object), pa.string()),
            "region": pa.array(np.full(len(rows), "eu", dtype=object), pa.string()),
            "model_version": pa.array(np.full(len(rows), "m1", dtype=object), pa.string()),
            "pred_ctr": pa.array(np.where(bad, 1.5, pred_ctr[rows])),
            "features": pa.array(features, pa.map_(pa.string(), pa.string())),
            "extra": pa.nulls(len(rows), pa.map_(pa.string(), pa.string())),
            "source_file": pa.nulls(len(rows), pa.string()),
            "ingest_run_id": pa.nulls(len(rows), pa.string()),
            "dt": dt_rows,
        }
    )

    # Actions: every click (attributed or late), a repeated click for some, likes before clicks.
    clicked = np.flatnonzero(clicks)
    repeat = clicked[rng.random(len(clicked)) < 0.2]
    liked = np.flatnonzero(likes)
    act_imp = np.concatenate([clicked, repeat, liked])
    act_kind = np.array(
        ["click"] * (len(clicked) + len(repeat)) + ["like"] * len(liked), dtype=object
    )
    act_at = np.concatenate(
        [
            served[clicked] + delay[clicked],
            served[repeat] + delay[repeat] + (rng.random(len(repeat)) < 0.5) * 10.0,
            served[liked] + rng.uniform(-SKEW_S / 2, 1, len(liked)) + delay[liked] * 0.5,
        ]
    ).round(3)
    actions = pa.table(
        {
            "action_id": pa.array([f"act{i:08d}" for i in range(len(act_imp))], pa.string()),
            "impression_id": pa.array(ids[act_imp], pa.string()),
            "user_id": pa.array(user_ids[act_imp], pa.string()),
            "action": pa.array(act_kind, pa.string()),
            "action_at": _timestamps(act_at),
            "value": pa.nulls(len(act_imp), pa.float64()),
            "extra": pa.nulls(len(act_imp), pa.map_(pa.string(), pa.string())),
            "source_file": pa.nulls(len(act_imp), pa.string()),
            "ingest_run_id": pa.nulls(len(act_imp), pa.string()),
            "dt": _timestamps(act_at).cast(pa.date32()),
        }
    )
    item_truth = pd.DataFrame(
        {
            "item_id": [f"item{j:04d}" for j in range(items)],
            "true_ctr": base_ctr * (1 - late_share),
        }
    )
    return SyntheticLogs(
        impressions, actions, truth, item_truth, dup_rows, int(bad.sum()), misdated
    )


def write_logs(spark, lake, logs: SyntheticLogs) -> None:
    """Write the logs to the lake's `impressions` and `actions` tables (contract schemas)."""
    for table, data, schema in (
        ("impressions", logs.impressions, IMPRESSION_SCHEMA),
        ("actions", logs.actions, ACTION_SCHEMA),
    ):
        lake.write(table, _to_spark(spark, data, schema), partition_by=["dt"])


def _to_spark(spark, data: pa.Table, schema):
    df = spark.createDataFrame(data)
    return df.select(*[df[f.name].cast(f.dataType).alias(f.name) for f in schema.fields])


def utc(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=float(seconds))
