"""The simulated world the logs are drawn from: items, users, query words and the click model.

The true probability of a click within the attribution window is a known function:

    p_click = item_ctr[item] * position_factor[position] * hour_factor[hour]

with both factors normalised to mean 1 over the generator's position and hour mix, so
`item_ctr` is exactly an item's click-through rate marginal over that mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import lgamma, log

import numpy as np
import pyarrow as pa

from freshlake.config import GenerateConfig

SURFACES = ("home_feed", "search", "related")
SURFACE_WEIGHTS = (0.55, 0.3, 0.15)
REGIONS = ("us-east", "us-west", "eu-west", "ap-south")
REGION_WEIGHTS = (0.35, 0.2, 0.3, 0.15)
DEVICES = ("android", "ios", "web")
DEVICE_WEIGHTS = (0.5, 0.35, 0.15)
MODEL_VERSIONS = ("ctr-2026.1", "ctr-2026.2")  # the second is rolled out half-way through
EXPERIMENT_VERSION = "ctr-2026.2-exp"
EXPERIMENT_SHARE = 0.1

POSITION_DECAY = 0.7  # position factor ~ position ** -POSITION_DECAY
HOUR_AMPLITUDE = 0.35  # hour factor ~ 1 + A cos(2 pi (hour - PEAK_CTR_HOUR) / 24)
PEAK_CTR_HOUR = 21
TRAFFIC_AMPLITUDE = 0.6  # traffic ~ 1 + A cos(2 pi (hour - PEAK_TRAFFIC_HOUR) / 24)
PEAK_TRAFFIC_HOUR = 19
ITEM_CTR_SIGMA = 0.8  # log-normal spread of item CTRs around base_ctr
MAX_ITEM_CTR = 0.25  # lowered further where needed so every p_click stays a probability
USER_ACTIVITY_EXPONENT = 0.8
CATEGORIES = 50
WORDS_PER_CATEGORY = 30
SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


@dataclass(frozen=True)
class World:
    """Catalog and click model; built once from the seed, shared by every chunk."""

    item_ids: pa.StringArray
    item_cdf: np.ndarray  # cumulative impression share, for inverse-CDF sampling
    item_share: np.ndarray  # probability that an impression shows each item
    item_ctr: np.ndarray  # true CTR within the attribution window, marginal over the mix
    item_category: np.ndarray
    user_ids: pa.StringArray
    user_cdf: np.ndarray
    user_region: np.ndarray
    user_device: np.ndarray
    vocabulary: pa.StringArray
    category_words: np.ndarray  # (CATEGORIES, WORDS_PER_CATEGORY) indices into vocabulary
    request_size_pmf: np.ndarray  # P(a request shows j + 1 impressions), j = 0..len-1
    position_factor: np.ndarray  # indexed by position (index 0 unused)
    hour_factor: np.ndarray  # indexed by UTC hour of served_at
    hour_traffic: np.ndarray  # share of requests served in each UTC hour

    def click_probability(
        self, item: np.ndarray, position: np.ndarray, hour: np.ndarray
    ) -> np.ndarray:
        """True probability of a click within the attribution window."""
        return self.item_ctr[item] * self.position_factor[position] * self.hour_factor[hour]

    def expected_ctr(self) -> float:
        """Overall CTR expected from the item popularity and item CTRs."""
        return float(self.item_share @ self.item_ctr)


def zipf_shares(count: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Power-law shares over `count` entities, ranks shuffled so ids do not reveal popularity."""
    weights = np.arange(1, count + 1, dtype=np.float64) ** -exponent
    return rng.permutation(weights / weights.sum())


def request_size_distribution(mean_size: int) -> np.ndarray:
    """1 + Poisson(mean_size - 1), truncated at 2 * mean_size + 1."""
    lam = mean_size - 1
    if lam == 0:
        return np.array([1.0])
    extra = np.arange(0, 2 * mean_size + 1)
    log_pmf = np.array([k * log(lam) - lam - lgamma(k + 1) for k in extra])
    pmf = np.exp(log_pmf - log_pmf.max())
    return pmf / pmf.sum()


def position_mix(size_pmf: np.ndarray) -> np.ndarray:
    """Share of impressions at each position (index 0 unused) given the request sizes."""
    at_least = size_pmf[::-1].cumsum()[::-1]  # P(size >= k) for k = 1..len
    return np.concatenate([[0.0], at_least / at_least.sum()])


def _cosine(amplitude: float, peak: int) -> np.ndarray:
    return 1 + amplitude * np.cos(2 * np.pi * (np.arange(24) - peak) / 24)


def _labels(prefix: str, count: int) -> pa.StringArray:
    width = len(str(count - 1))
    return pa.array([f"{prefix}{i:0{width}d}" for i in range(count)], pa.string())


def _vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.choice(SYLLABLES, size=int(rng.integers(2, 4)))
        words.add("".join(syllables))
    return sorted(words)


def build_world(settings: GenerateConfig) -> World:
    """Draw the catalog and click model from `settings.seed` (same seed, same world)."""
    rng = np.random.default_rng(np.random.SeedSequence([settings.seed, 0]))
    item_share = zipf_shares(settings.items, settings.popularity_exponent, rng)
    sigma = ITEM_CTR_SIGMA
    item_ctr = settings.base_ctr * np.exp(
        sigma * rng.standard_normal(settings.items) - sigma**2 / 2
    )
    user_share = zipf_shares(settings.users, USER_ACTIVITY_EXPONENT, rng)

    size_pmf = request_size_distribution(settings.impressions_per_request)
    positions = position_mix(size_pmf)
    position_factor = np.zeros(len(positions))
    position_factor[1:] = np.arange(1, len(positions), dtype=np.float64) ** -POSITION_DECAY
    position_factor /= positions @ position_factor
    traffic = _cosine(TRAFFIC_AMPLITUDE, PEAK_TRAFFIC_HOUR)
    traffic /= traffic.sum()
    hour_factor = _cosine(HOUR_AMPLITUDE, PEAK_CTR_HOUR)
    hour_factor /= traffic @ hour_factor
    # p_click / (1 - late_click_share) is the chance of any click; keep it <= 1 everywhere.
    ceiling = (1 - settings.late_click_share) / (position_factor.max() * hour_factor.max())
    item_ctr = np.minimum(item_ctr, min(MAX_ITEM_CTR, ceiling))

    vocabulary = _vocabulary(rng, CATEGORIES * WORDS_PER_CATEGORY // 2)
    return World(
        item_ids=_labels("item-", settings.items),
        item_cdf=np.cumsum(item_share),
        item_share=item_share,
        item_ctr=item_ctr,
        item_category=rng.integers(0, CATEGORIES, settings.items),
        user_ids=_labels("user-", settings.users),
        user_cdf=np.cumsum(user_share),
        user_region=rng.choice(len(REGIONS), settings.users, p=REGION_WEIGHTS),
        user_device=rng.choice(len(DEVICES), settings.users, p=DEVICE_WEIGHTS),
        vocabulary=pa.array(vocabulary, pa.string()),
        category_words=rng.integers(0, len(vocabulary), (CATEGORIES, WORDS_PER_CATEGORY)),
        request_size_pmf=size_pmf,
        position_factor=position_factor,
        hour_factor=hour_factor,
        hour_traffic=traffic,
    )
