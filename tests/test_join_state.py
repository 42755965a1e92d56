"""JoinerState: what the joiner's sink remembers between micro-batches, bounded by the watermark."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa

from freshlake.streaming.join_sink import FRESH_ACTIONS, FRESH_EXAMPLES, restore_state
from freshlake.streaming.join_state import JoinerState

T0 = datetime(2026, 1, 1, 12)  # naive UTC, as the sink keeps times


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def state_at(config, watermark_minutes: float | None = None) -> JoinerState:
    return JoinerState.empty(config, None if watermark_minutes is None else at(watermark_minutes))


def test_keep_is_window_plus_skew_plus_watermark_delay(config):
    state = state_at(config, 0)
    labels, delay = config.labels, config.streaming.watermark_delay_seconds
    expected = labels.attribution_window_seconds + labels.clock_skew_seconds + delay
    assert state.keep == timedelta(seconds=expected)
    assert state.since() == T0 - state.keep


def test_remembers_written_impressions_and_which_were_positive(config):
    state = state_at(config)
    state.remember_written([("neg", at(0), False), ("pos", at(1), True)])
    state.remember_written([("pos-2", at(2), True)])
    assert state.written == {"neg": at(0), "pos": at(1), "pos-2": at(2)}
    assert state.positives == {"pos": at(1), "pos-2": at(2)}


def test_advance_forgets_what_fell_out_of_reach_and_keeps_the_boundary(config):
    state = state_at(config, 0)
    keep_minutes = state.keep.total_seconds() / 60
    state.remember_written([("old", at(-1), True), ("edge", at(0), True), ("new", at(5), False)])
    state.add_secondary(
        [
            ("gone", "like", at(-1)),
            ("straddles", "like", at(-1)),  # one action out of reach, one within: kept
            ("straddles", "like", at(3)),
        ]
    )
    state.advance(at(keep_minutes))  # since = T0
    assert state.written == {"edge": at(0), "new": at(5)}
    assert state.positives == {"edge": at(0)}
    assert state.secondary == {"straddles": {("like", at(-1)), ("like", at(3))}}

    state.advance(at(keep_minutes - 30))  # an older watermark changes nothing
    assert state.watermark == at(keep_minutes)
    assert set(state.written) == {"edge", "new"}


def test_new_secondary_drops_resends_repeats_and_late_actions(config):
    state = state_at(config, 0)
    state.add_secondary([("a", "like", at(1))])
    since = state.since()
    rows = [
        ("a", "like", at(1)),  # remembered from an earlier batch: a re-send
        ("a", "like", at(2)),  # new
        ("a", "like", at(2)),  # repeated within the batch
        ("a", "conversion", at(2)),  # another action at the same time: new
        ("b", "like", since),  # exactly at the bound: still in reach
        ("b", "like", since - timedelta(microseconds=1)),  # older than anything remembered
    ]
    keep, late = state.new_secondary(rows)
    assert keep == [False, True, False, True, True, False]
    assert late == 1
    assert state.secondary == {"a": {("like", at(1))}}, "new_secondary only reads the state"


def test_restores_the_committed_tables_as_of_a_watermark(config, lake):
    """Rows within reach of the watermark come back; older ones stay in the tables only."""
    state = state_at(config, 0)
    since = state.since()
    before = since - timedelta(seconds=1)
    examples = pa.table(
        {
            "impression_id": ["too-old", "edge", "neg", "pos"],
            "served_at": pa.array([before, since, at(-1), at(-2)], pa.timestamp("us", "UTC")),
            "label": pa.array([1, 1, 0, 1], pa.int32()),
        }
    )
    examples = examples.append_column("dt", pa.array(["2026-01-01"] * 4))
    lake.append_arrow(FRESH_EXAMPLES, examples, partition_by=["dt"])
    actions = pa.table(
        {
            "impression_id": ["too-old", "pos", "pos"],
            "action": ["like", "like", "conversion"],
            "action_at": pa.array([before, at(-1), at(-1)], pa.timestamp("us", "UTC")),
        }
    )
    actions = actions.append_column("dt", pa.array(["2026-01-01"] * 3))
    lake.append_arrow(FRESH_ACTIONS, actions, partition_by=["dt"])

    restored = restore_state(lake, config, T0)
    assert restored.watermark == T0 and restored.keep == state.keep
    assert restored.written == {"edge": since, "neg": at(-1), "pos": at(-2)}
    assert restored.positives == {"edge": since, "pos": at(-2)}
    assert restored.secondary == {"pos": {("like", at(-1)), ("conversion", at(-1))}}


def test_restores_nothing_before_the_tables_exist(config, lake):
    restored = restore_state(lake, config, T0)
    assert (restored.written, restored.positives, restored.secondary) == ({}, {}, {})
