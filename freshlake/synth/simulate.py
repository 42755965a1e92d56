"""Simulate one chunk of traffic: requests, their impressions, and the actions that follow.

Everything is built column-wise with numpy and pyarrow. Tables come out in the log schemas of
`freshlake.synth.schemas` plus the hidden column `_epoch_ms` (render this record's timestamp as
epoch milliseconds in JSON lines), and with the truth needed to check statistics later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshlake.config import GenerateConfig
from freshlake.synth import ids
from freshlake.synth.schemas import (
    ACTION_TYPES,
    ACTIONS_SCHEMA,
    IMPRESSIONS_SCHEMA,
    TRUTH_IMPRESSIONS_SCHEMA,
    with_epoch_ms,
)
from freshlake.synth.world import (
    DEVICES,
    EXPERIMENT_SHARE,
    EXPERIMENT_VERSION,
    MODEL_VERSIONS,
    REGIONS,
    SURFACE_WEIGHTS,
    SURFACES,
    World,
)

MS_PER_DAY = 86_400_000
MS_PER_HOUR = 3_600_000
SEARCH = SURFACES.index("search")
MAX_QUERY_WORDS = 3
PRED_CTR_NOISE = 0.5  # log-normal sigma of the serving model's error

# Delays after the impression (clicks) or after the click (repeat, like, conversion):
# log-normal median and sigma, in milliseconds.
CLICK_DELAY = (20_000.0, 1.3)
REPEAT_DELAY = (40_000.0, 1.0)
LIKE_DELAY = (90_000.0, 1.0)
UNCLICKED_LIKE_RATE = 0.1  # likes without a click: like_share * p_click * this, per impression
CONVERSION_DELAY = (900_000.0, 1.2)
CONVERSION_VALUE = (25.0, 0.8)  # purchase amount
LATE_TAIL_MEAN_WINDOWS = 2.0  # late clicks: window + exponential with this mean (in windows)


@dataclass(frozen=True)
class ChunkSpec:
    """One output file pair: a slice of one day's impressions."""

    index: int
    day: int  # days after settings.start
    rows: int  # impressions
    first_row: int  # global index of the chunk's first impression (for unique ids)


@dataclass(frozen=True)
class Impressions:
    """A chunk's impressions, with the simulation's arrays the actions are drawn from."""

    table: pa.Table  # IMPRESSIONS_SCHEMA + _epoch_ms
    served_ms: np.ndarray
    item: np.ndarray
    position: np.ndarray
    hour: np.ndarray
    p_click: np.ndarray
    requests: int


@dataclass(frozen=True)
class Actions:
    """A chunk's actions and the per-impression truth."""

    table: pa.Table  # ACTIONS_SCHEMA + _epoch_ms, sorted by action_at
    action_ms: np.ndarray
    truth: pa.Table  # TRUTH_IMPRESSIONS_SCHEMA, one row per impression
    counts: dict[str, int]


def _lognormal(rng: np.random.Generator, shape: tuple[float, float], size: int) -> np.ndarray:
    median, sigma = shape
    return rng.lognormal(np.log(median), sigma, size)


def _timestamps_us(ms: np.ndarray) -> pa.TimestampArray:
    return pa.array(ms * 1000, pa.timestamp("us", tz="UTC"))


def _request_sizes(world: World, rng: np.random.Generator, rows: int) -> np.ndarray:
    """Impressions per request, summing to exactly `rows` (the last request is cut short)."""
    pmf = world.request_size_pmf
    mean = float(np.arange(1, len(pmf) + 1) @ pmf)
    sizes = np.empty(0, dtype=np.int64)
    while sizes.sum() < rows:
        draw = rng.choice(len(pmf), size=int(rows / mean * 1.05) + 16, p=pmf) + 1
        sizes = np.concatenate([sizes, draw])
    ends = np.cumsum(sizes)
    count = int(np.searchsorted(ends, rows)) + 1
    sizes = sizes[:count]
    sizes[-1] -= ends[count - 1] - rows
    return sizes


def _sample(cdf: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _queries(
    world: World, rng: np.random.Generator, category: np.ndarray, surface: np.ndarray
) -> pa.StringArray:
    """Short search queries from the words of the first item's category; null off search."""
    count = len(category)
    slots = world.category_words[
        category[:, None], rng.integers(0, world.category_words.shape[1], (count, MAX_QUERY_WORDS))
    ]
    used = np.arange(MAX_QUERY_WORDS) < rng.integers(1, MAX_QUERY_WORDS + 1, count)[:, None]
    words = [
        pc.take(world.vocabulary, pa.array(slots[:, j], mask=~used[:, j]))
        for j in range(MAX_QUERY_WORDS)
    ]
    query = pc.binary_join_element_wise(*words, " ", null_handling="skip")
    return pc.if_else(pa.array(surface == SEARCH), query, pa.nulls(count, pa.string()))


def simulate_impressions(
    world: World, settings: GenerateConfig, spec: ChunkSpec, rng: np.random.Generator
) -> Impressions:
    """The chunk's impressions, grouped in requests and sorted by served_at."""
    sizes = _request_sizes(world, rng, spec.rows)
    requests = len(sizes)
    day_start_ms = (np.datetime64(settings.start, "D").astype(np.int64) + spec.day) * MS_PER_DAY
    request_hour = rng.choice(24, size=requests, p=world.hour_traffic)
    request_ms = day_start_ms + request_hour * MS_PER_HOUR + rng.integers(0, MS_PER_HOUR, requests)
    order = np.argsort(request_ms, kind="stable")
    request_ms, request_hour = request_ms[order], request_hour[order]
    request_user = _sample(world.user_cdf, rng, requests)
    surface = rng.choice(len(SURFACES), size=requests, p=SURFACE_WEIGHTS)
    version = np.full(requests, int(spec.day * 2 >= settings.days))
    version[(version == 1) & (rng.random(requests) < EXPERIMENT_SHARE)] = 2

    request = np.repeat(np.arange(requests), sizes)
    starts = np.cumsum(sizes) - sizes
    position = np.arange(spec.rows) - starts[request] + 1
    item = _sample(world.item_cdf, rng, spec.rows)
    hour = request_hour[request]
    user = request_user[request]
    p_click = world.click_probability(item, position, hour)
    noise = np.exp(PRED_CTR_NOISE * rng.standard_normal(spec.rows) - PRED_CTR_NOISE**2 / 2)
    pred_ctr = np.clip(np.round(p_click * noise, 6), 0.0, 1.0)
    query = _queries(world, rng, world.item_category[item[starts]], surface)

    by_request = pa.array(request)
    request_ids = ids.hex_ids(ids.index_in_space(ids.REQUEST, spec.index, np.arange(requests)))
    impression_ids = ids.hex_ids(
        ids.index_in_space(ids.IMPRESSION, 0, spec.first_row + np.arange(spec.rows))
    )
    served_ms = request_ms[request]
    features = pa.StructArray.from_arrays(
        [
            pc.take(pa.array(DEVICES), pa.array(world.user_device[user])),
            pa.array(hour, pa.int32()),
            pc.take(query, by_request),
        ],
        fields=list(IMPRESSIONS_SCHEMA.field("features").type),
    )
    version_names = (*MODEL_VERSIONS, EXPERIMENT_VERSION)
    table = pa.Table.from_arrays(
        [
            impression_ids,
            pc.take(request_ids, by_request),
            pc.take(world.user_ids, pa.array(user)),
            pc.take(world.item_ids, pa.array(item)),
            _timestamps_us(served_ms),
            pa.array(position, pa.int32()),
            pc.take(pa.array(SURFACES), pa.array(surface[request])),
            pc.take(pa.array(REGIONS), pa.array(world.user_region[user])),
            pc.take(pa.array(version_names), pa.array(version[request])),
            pa.array(pred_ctr),
            features,
            pa.array(rng.random(spec.rows) < settings.epoch_ms_share),
        ],
        schema=with_epoch_ms(IMPRESSIONS_SCHEMA),
    )
    return Impressions(table, served_ms, item, position, hour, p_click, requests)


def _click_delays(
    rng: np.random.Generator, count: int, window_ms: int, late_share: float
) -> tuple[np.ndarray, np.ndarray]:
    """First-click delays (ms): within the window, or with `late_share` past it (long tail)."""
    late = rng.random(count) < late_share
    inside = _lognormal(rng, CLICK_DELAY, count)
    lo, hi = min(1_000, window_ms // 2), max(window_ms - 1_000, window_ms // 2)
    redraw = (inside < 200) | (inside > hi)
    inside[redraw] = rng.uniform(lo, hi, int(redraw.sum()))
    beyond = window_ms + 1_000 + rng.exponential(LATE_TAIL_MEAN_WINDOWS * window_ms, count)
    return np.where(late, beyond, inside).astype(np.int64), late


def simulate_actions(
    imps: Impressions,
    settings: GenerateConfig,
    window_seconds: int,
    spec: ChunkSpec,
    rng: np.random.Generator,
) -> Actions:
    """Clicks (some late, some repeated), likes and conversions after clicks, and the truth.

    An impression gets a first click with probability p_click / (1 - late_click_share); that
    click is late (past the attribution window) with probability late_click_share, so a click
    within the window has probability exactly p_click. Delays count from served_at.
    """
    window_ms = window_seconds * 1000
    p_any = np.minimum(1.0, imps.p_click / (1.0 - settings.late_click_share))
    clicked = np.flatnonzero(rng.random(spec.rows) < p_any)
    delay, late = _click_delays(rng, len(clicked), window_ms, settings.late_click_share)

    def follow(share: float, shape: tuple[float, float], gap_ms: int) -> _Followers:
        chosen = np.flatnonzero(rng.random(len(clicked)) < share)
        later = delay[chosen] + gap_ms + _lognormal(rng, shape, len(chosen)).astype(np.int64)
        return _Followers(clicked[chosen], later)

    first = _Followers(clicked, delay)
    repeat = follow(settings.repeat_click_share, REPEAT_DELAY, 500)
    like = follow(settings.like_share, LIKE_DELAY, 1_000)
    unclicked_like = _unclicked_likes(imps, clicked, settings.like_share, rng)
    like = _Followers(
        np.concatenate([like.impression, unclicked_like.impression]),
        np.concatenate([like.delay_ms, unclicked_like.delay_ms]),
    )
    conversion = follow(settings.conversion_share, CONVERSION_DELAY, 5_000)
    amounts = np.round(_lognormal(rng, CONVERSION_VALUE, len(conversion.impression)), 2)

    events = {"click": (first, repeat), "like": (like,), "conversion": (conversion,)}
    table, action_ms = _actions_table(imps, events, amounts, spec, settings, rng)
    truth = _truth_table(imps, spec.rows, window_ms, first, like, conversion)
    counts = {
        "click": len(clicked) + len(repeat.impression),
        "like": len(like.impression),
        "conversion": len(conversion.impression),
        "late_clicks": int(late.sum()),
        "repeated_clicks": len(repeat.impression),
        "likes_without_click": len(unclicked_like.impression),
    }
    return Actions(table, action_ms, truth, counts)


@dataclass(frozen=True)
class _Followers:
    """Actions of one kind: the impression (row) each belongs to and its delay in ms."""

    impression: np.ndarray
    delay_ms: np.ndarray

    def within(self, rows: int, window_ms: int) -> pa.BooleanArray:
        """Per impression: has one of these actions within the attribution window."""
        flags = np.zeros(rows, dtype=bool)
        flags[self.impression[self.delay_ms <= window_ms]] = True
        return pa.array(flags)


def _unclicked_likes(
    imps: Impressions, clicked: np.ndarray, like_share: float, rng: np.random.Generator
) -> _Followers:
    """The few likes given without a click (most likes follow a click)."""
    unclicked = np.ones(len(imps.p_click), dtype=bool)
    unclicked[clicked] = False
    chance = like_share * UNCLICKED_LIKE_RATE * imps.p_click
    chosen = np.flatnonzero(unclicked & (rng.random(len(chance)) < chance))
    delay = 1_000 + _lognormal(rng, LIKE_DELAY, len(chosen)).astype(np.int64)
    return _Followers(chosen, delay)


def _actions_table(
    imps: Impressions,
    events: dict[str, tuple[_Followers, ...]],
    conversion_amounts: np.ndarray,
    spec: ChunkSpec,
    settings: GenerateConfig,
    rng: np.random.Generator,
) -> tuple[pa.Table, np.ndarray]:
    """All actions in ACTIONS_SCHEMA (+ _epoch_ms), sorted by action_at; and action_at in ms."""
    groups = [(ACTION_TYPES.index(k), g) for k, gs in events.items() for g in gs]
    impression = np.concatenate([g.impression for _, g in groups])
    kind = np.repeat([k for k, _ in groups], [len(g.impression) for _, g in groups])
    action_ms = imps.served_ms[impression] + np.concatenate([g.delay_ms for _, g in groups])
    value = np.full(len(impression), np.nan)
    value[kind == ACTION_TYPES.index("conversion")] = conversion_amounts
    order = np.argsort(action_ms, kind="stable")
    impression, kind, action_ms, value = (
        impression[order],
        kind[order],
        action_ms[order],
        value[order],
    )
    count = len(impression)
    table = pa.Table.from_arrays(
        [
            ids.hex_ids(ids.index_in_space(ids.ACTION, spec.index, np.arange(count))),
            pc.take(imps.table.column("impression_id"), pa.array(impression)),
            pc.take(imps.table.column("user_id"), pa.array(impression)),
            pc.take(pa.array(ACTION_TYPES), pa.array(kind)),
            _timestamps_us(action_ms),
            pa.array(value, mask=np.isnan(value)),
            pa.array(rng.random(count) < settings.epoch_ms_share),
        ],
        schema=with_epoch_ms(ACTIONS_SCHEMA),
    )
    return table, action_ms


def _truth_table(
    imps: Impressions,
    rows: int,
    window_ms: int,
    first: _Followers,
    like: _Followers,
    conversion: _Followers,
) -> pa.Table:
    """One TRUTH_IMPRESSIONS_SCHEMA row per impression."""
    first_delay = np.full(rows, np.nan)
    first_delay[first.impression] = first.delay_ms / 1000.0
    return pa.Table.from_arrays(
        [
            imps.table.column("impression_id"),
            imps.table.column("item_id"),
            pa.array(imps.position, pa.int32()),
            pa.array(imps.hour, pa.int32()),
            pa.array(imps.p_click),
            first.within(rows, window_ms),
            pa.array(first_delay, mask=np.isnan(first_delay)),
            like.within(rows, window_ms),
            conversion.within(rows, window_ms),
        ],
        schema=TRUTH_IMPRESSIONS_SCHEMA,
    )
