"""Examples tables with a known logistic truth, for tests, benchmarks and demos.

The rows follow the examples contract (feature columns `f_*`, `label`, `sample_prob`, `weight`,
`split`, `dt`), with negatives downsampled at `negative_rate` and weighted `1 / sample_prob`,
so a weighted model must come out calibrated and an unweighted one over-predicts.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshlake import contract
from freshlake.config import FeatureSpec

SYNTHETIC_SPEC = [
    FeatureSpec(name="user_id", kind="categorical", buckets=4001),
    FeatureSpec(name="item_id", kind="categorical", buckets=1009),
    FeatureSpec(name="device", kind="categorical", buckets=11),
    FeatureSpec(name="position", kind="numeric"),
    FeatureSpec(name="hour", kind="numeric"),
    FeatureSpec(name="query", kind="text", buckets=2003),
]


def synthetic_examples(
    impressions: int,
    *,
    seed: int = 0,
    negative_rate: float = 0.1,
    days: int = 4,
    eval_days: int = 1,
    users: int = 2000,
    items: int = 400,
    start: date = date(2026, 1, 1),
    click_delay_seconds: float = 300.0,
    day_seconds: int = 86_400,
) -> pa.Table:
    """`impressions` served rows drawn from a logistic truth, negatives kept at `negative_rate`.

    The click logit adds an item effect (items drawn with Zipf popularity), a user effect, a
    device effect, a position penalty and query-token effects, so a model with user and
    context features beats a per-item popularity baseline.
    """
    rng = np.random.default_rng(seed)
    item = np.minimum(rng.zipf(1.3, impressions) - 1, items - 1)
    user = rng.integers(0, users, impressions)
    device = rng.integers(0, 3, impressions)
    position = rng.integers(1, 6, impressions).astype(np.float64)
    hour = rng.integers(0, 24, impressions).astype(np.float64)
    n_tokens = rng.integers(0, 4, impressions)
    tokens = rng.integers(0, 300, n_tokens.sum())
    item_effect = rng.normal(0, 0.8, items)
    user_effect = rng.normal(0, 1.0, users)
    token_effect = rng.normal(0, 0.6, 300)
    owner = np.repeat(np.arange(impressions), n_tokens)
    token_sum = np.bincount(owner, weights=token_effect[tokens], minlength=impressions)
    logit = (
        -3.0
        + item_effect[item]
        + user_effect[user]
        + np.array([0.0, 0.6, -0.4])[device]
        - 0.3 * (position - 1)
        + token_sum
    )
    label = (rng.random(impressions) < 1 / (1 + np.exp(-logit))).astype(np.int32)
    keep_prob = np.where(label == 1, 1.0, negative_rate)
    kept = rng.random(impressions) < keep_prob
    day = rng.integers(0, days, impressions)
    # Served at a uniform second of the day's first `day_seconds`; a click follows after an
    # exponential delay (mean `click_delay_seconds`), inside the labels' default one-hour window.
    second = rng.integers(0, day_seconds, impressions)
    delay = np.minimum(rng.exponential(click_delay_seconds, impressions), 3_599.0)
    offsets = np.r_[0, np.cumsum(n_tokens)]
    query = [tokens[offsets[i] : offsets[i + 1]].tolist() for i in np.flatnonzero(kept)]
    rows = np.flatnonzero(kept)
    feature, missing = contract.feature_column, contract.missing_column
    epoch = np.datetime64(start.isoformat(), "s")
    served = epoch + (day[rows] * 86_400 + second[rows]).astype("timedelta64[s]")
    clicked_at = served + (delay[rows] * 1e6).astype("timedelta64[us]")
    return pa.table(
        {
            "row_id": pa.array(rows, pa.int64()),
            "impression_id": pa.array([f"imp-{seed}-{i}" for i in rows]),
            feature("user_id"): pa.array(user[rows] * 2 % 4001, pa.int64()),
            feature("item_id"): pa.array(item[rows] * 7 % 1009, pa.int64()),
            feature("device"): pa.array(device[rows], pa.int64()),
            feature("position"): pa.array(position[rows]),
            missing("position"): pa.array(np.zeros(len(rows), np.int32)),
            feature("hour"): pa.array(hour[rows]),
            missing("hour"): pa.array(np.zeros(len(rows), np.int32)),
            feature("query"): pa.array(query, pa.list_(pa.int64())),
            "served_at": pa.array(served.astype("datetime64[us]"), pa.timestamp("us", "UTC")),
            contract.FIRST_ACTION_AT: pa.array(
                clicked_at, pa.timestamp("us", "UTC"), mask=label[rows] == 0
            ),
            contract.LABEL: pa.array(label[rows]),
            contract.SAMPLE_PROB: pa.array(keep_prob[rows]),
            contract.WEIGHT: pa.array(1 / keep_prob[rows]),
            "true_ctr": pa.array(1 / (1 + np.exp(-logit[rows]))),
            contract.SPLIT: pa.array(np.where(day[rows] >= days - eval_days, "eval", "train")),
            contract.SOURCE: pa.array(["batch"] * len(rows)),
            contract.DT: pa.array([start + timedelta(days=int(d)) for d in day[rows]], pa.date32()),
        }
    )


def write_synthetic_table(
    uri: str, table: pa.Table, *, rows_per_group: int = 2000, mode: str = "append"
) -> int:
    """Write `table` as a Delta table partitioned by `dt`; returns the new version."""
    from freshlake.lake import write_arrow_table  # the lake (and pyspark) only when writing

    return write_arrow_table(
        uri, table, partition_by=[contract.DT], mode=mode, max_row_group_size=rows_per_group
    )


def joiner_snapshot(
    table: pa.Table, now: datetime, window_seconds: float, watermark_delay_seconds: float
) -> pa.Table:
    """The rows of a complete `table` the online joiner has written by `now`: a positive once
    its click has arrived, a negative once the watermark (`now` - delay) passed its window."""
    now_us = np.datetime64(now.replace(tzinfo=None), "us")
    served = table.column("served_at").to_numpy().astype("datetime64[us]")
    clicked = table.column(contract.FIRST_ACTION_AT).to_numpy().astype("datetime64[us]")
    label = table.column(contract.LABEL).to_numpy()
    closes = served + np.timedelta64(int((window_seconds + watermark_delay_seconds) * 1e6), "us")
    positive = (label == 1) & (clicked <= now_us)
    negative = (label == 0) & (closes <= now_us)
    return table.filter(pa.array((served <= now_us) & (positive | negative)))


def delayed_feedback_stream(
    impressions: int, *, seed: int = 0, negative_rate: float = 0.1, day_seconds: int = 10_800
) -> tuple[pa.Table, pa.Table, datetime]:
    """A batch table and a fresh table cut from one logistic truth, for delayed-feedback checks.

    Four days of `day_seconds` of traffic each: days 1, 2 and 4 (the eval day) are the batch
    `examples`, complete; day 3 is the joiner's `fresh_examples` as written by the end of its
    traffic, `now` (default one-hour window, 120 s watermark delay): its last window holds only
    the clicks that have arrived. Returns (examples, fresh_examples, now).
    """
    table = synthetic_examples(
        impressions,
        seed=seed,
        negative_rate=negative_rate,
        days=4,
        eval_days=1,
        day_seconds=day_seconds,
    )
    stream_day = date(2026, 1, 3)
    in_stream = pc.equal(table.column(contract.DT), pa.scalar(stream_day, pa.date32()))
    now = datetime.combine(stream_day, datetime.min.time()) + timedelta(seconds=day_seconds)
    fresh = joiner_snapshot(table.filter(in_stream), now, 3600, 120)
    fresh = fresh.set_column(
        fresh.schema.get_field_index(contract.SOURCE),
        contract.SOURCE,
        pa.array(["stream"] * fresh.num_rows),
    )
    return table.filter(pc.invert(in_stream)), fresh, now
