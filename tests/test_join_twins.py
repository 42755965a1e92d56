"""The joiner's driver-side twins agree with their Spark versions, row by row.

The sink attributes secondary actions with `is_attributed` and drops re-sent ones with
`JoinerState.new_secondary`, on Python values; the batch builder and the streaming plan use
`attribution_condition` and `dedup_actions` on Spark columns. Hypothesis draws inputs around the
edges (the attribution window's bounds to the microsecond, re-sends and repeats) and Spark
evaluates the same inputs in one small DataFrame per example. Times travel as epoch
microseconds, so no time zone conversion stands between the two sides.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from freshlake.config import LabelConfig
from freshlake.features.labeling import attribution_condition, is_attributed
from freshlake.features.quality import ACTION_KEY, dedup_actions
from freshlake.streaming.join_state import EPOCH, JoinerState

T0_MICROS = 1_767_268_800_000_000  # 2026-01-01T12:00:00Z
SPARK_EXAMPLES = settings(max_examples=6, deadline=None, derandomize=True)
CASES = 6  # drawn cases per example, evaluated in one Spark job


def naive_utc(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def to_micros(value: datetime) -> int:
    return (value - EPOCH) // timedelta(microseconds=1)


def seconds(n: int) -> int:
    return n * 1_000_000


# Offsets from a bound: the bound itself, a microsecond either side, seconds, a day.
NEAR_A_BOUND = st.one_of(
    st.integers(-2, 2),
    st.sampled_from([seconds(-1), seconds(1), seconds(-86_400), seconds(86_400)]),
    st.integers(seconds(-5), seconds(5)),
)


@st.composite
def served_and_action_times(draw, labels: LabelConfig) -> tuple[int, int]:
    served = T0_MICROS + draw(st.integers(seconds(-10 * 86_400), seconds(10 * 86_400)))
    bound = draw(
        st.sampled_from(
            [
                served - seconds(labels.clock_skew_seconds),  # lower: clock skew
                served + seconds(labels.attribution_window_seconds),  # upper: window end
                served,
            ]
        )
    )
    return served, bound + draw(NEAR_A_BOUND)


LABELS = st.builds(
    LabelConfig,
    clock_skew_seconds=st.sampled_from([0, 1, 60, 3_600]) | st.integers(0, 86_400),
    attribution_window_seconds=st.sampled_from([1, 30, 3_600, 86_400]) | st.integers(1, 7 * 86_400),
)


@st.composite
def labels_and_pairs(draw) -> tuple[LabelConfig, list[tuple[int, int]]]:
    labels = draw(LABELS)
    return labels, draw(st.lists(served_and_action_times(labels), min_size=1, max_size=30))


@SPARK_EXAMPLES
@given(st.lists(labels_and_pairs(), min_size=1, max_size=CASES))
def test_is_attributed_matches_attribution_condition_at_the_window_edges(spark, cases):
    """Several attribution configs per example, each its own column, all in one Spark job."""
    rows = [
        (case, i, served, action)
        for case, (_labels, pairs) in enumerate(cases)
        for i, (served, action) in enumerate(pairs)
    ]
    df = spark.createDataFrame(rows, "case int, i int, served long, action long")
    served, action = F.timestamp_micros("served"), F.timestamp_micros("action")
    by_case = [
        (F.col("case") == case, attribution_condition(served, action, labels))
        for case, (labels, _pairs) in enumerate(cases)
    ]
    inside = F.when(*by_case[0])
    for test, value in by_case[1:]:
        inside = inside.when(test, value)
    in_spark = {
        (r.case, r.i): r.inside for r in df.select("case", "i", inside.alias("inside")).collect()
    }
    on_driver = {
        (case, i): is_attributed(naive_utc(served), naive_utc(action), cases[case][0])
        for case, i, served, action in rows
    }
    assert on_driver == in_spark


# (impression_id, action, action_at in epoch microseconds). Few ids, actions and times, so
# re-sends and repeats are frequent.
DrawnAction = tuple[str, str, int]
ACTIONS = st.tuples(
    st.sampled_from(["i0", "i1", "i2"]),
    st.sampled_from(["like", "conversion"]),
    st.sampled_from([0, 1, seconds(1), seconds(60), seconds(3_600)]).map(
        lambda offset: T0_MICROS + offset
    ),
)


@st.composite
def remembered_and_batch(draw) -> tuple[list[DrawnAction], list[DrawnAction], int | None]:
    """Actions remembered from earlier batches, a new batch (with re-sends), the watermark."""
    remembered = draw(st.lists(ACTIONS, max_size=8))
    batch = draw(st.lists(ACTIONS | st.sampled_from(remembered or [("i0", "like", T0_MICROS)])))
    # The watermark puts `since` before, between or after the drawn times.
    watermark_offset = draw(st.sampled_from([None, -1, 0, 1, seconds(1), seconds(7_200)]))
    return remembered, batch, watermark_offset


def action_frame(spark, actions: list[DrawnAction]) -> DataFrame:
    df = spark.createDataFrame(actions, "impression_id string, action string, micros long")
    return df.select("impression_id", "action", F.timestamp_micros("micros").alias("action_at"))


def in_case(case: int, actions: list[DrawnAction]) -> list[DrawnAction]:
    """The actions with impression ids of their own, so cases share one DataFrame."""
    return [(f"{case}/{impression_id}", action, at) for impression_id, action, at in actions]


@SPARK_EXAMPLES
@given(st.lists(remembered_and_batch(), min_size=1, max_size=CASES))
def test_new_secondary_keeps_what_dedup_actions_keeps_minus_the_remembered(spark, cases):
    """Kept = distinct new actions (`dedup_actions`) not remembered and not late, each once."""
    kept, since = [], {}
    for case, (remembered, batch, watermark_offset) in enumerate(cases):
        state = JoinerState(keep=timedelta(hours=1, minutes=3))
        if watermark_offset is not None:  # since = the drawn times' T0 + offset
            state.watermark = naive_utc(T0_MICROS + watermark_offset) + state.keep
        state.add_secondary((i, a, naive_utc(t)) for i, a, t in remembered)
        since[case] = to_micros(state.since())
        keep, late = state.new_secondary([(i, a, naive_utc(t)) for i, a, t in batch])
        kept += [row for row, k in zip(in_case(case, batch), keep, strict=True) if k]
        assert late == sum(t < since[case] for _, _, t in batch)

    batches = [a for case, (_, batch, _) in enumerate(cases) for a in in_case(case, batch)]
    remembered = [a for case, (known, _, _) in enumerate(cases) for a in in_case(case, known)]
    new = dedup_actions(action_frame(spark, batches))
    if remembered:
        new = new.join(action_frame(spark, remembered), list(ACTION_KEY), "left_anti")
    rows = new.select("impression_id", "action", F.unix_micros("action_at")).collect()
    in_reach = [tuple(r) for r in rows if r[2] >= since[int(r.impression_id.split("/")[0])]]
    assert sorted(kept) == sorted(in_reach), "each new action in reach kept once"
