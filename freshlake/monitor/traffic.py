"""Per-day traffic checks on small daily frames: source shares, volume and CTR anomalies.

Each day is compared with its trailing baseline: the `baseline_days` days before it that have
data (at least `min_baseline_days`, or the check is skipped).
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pandas as pd

from freshlake.config import MonitorConfig
from freshlake.monitor.results import CheckResult, judged, skipped


def _baseline(frame: pd.DataFrame, day: date, cfg: MonitorConfig) -> pd.DataFrame:
    before = frame[frame["dt"] < day]
    days = sorted(before["dt"].unique())[-cfg.baseline_days :]
    return before[before["dt"].isin(days)]


def source_share_checks(counts: pd.DataFrame, day: date, cfg: MonitorConfig) -> list[CheckResult]:
    """Each source's share of the day's impressions against its mean share over the baseline.

    `counts` has dt, source, impressions. A source seen in the baseline but absent on `day` has
    share 0 (a stopped pipeline). Fires when share < (1 - max_share_drop) x baseline share.
    """
    name = "source_share"
    shares = counts.pivot_table(
        index="dt", columns="source", values="impressions", aggfunc="sum", fill_value=0
    )
    shares = shares.div(shares.sum(axis=1), axis=0).reset_index()
    if day not in set(shares["dt"]):
        return [skipped(name, cfg.source_column, f"no impressions on {day}", day)]
    history = _baseline(shares, day, cfg)
    if history["dt"].nunique() < cfg.min_baseline_days:
        reason = f"{history['dt'].nunique()} baseline days, need {cfg.min_baseline_days}"
        return [skipped(name, cfg.source_column, reason, day)]
    today = shares[shares["dt"] == day].iloc[0]
    results = []
    for source in [c for c in shares.columns if c != "dt"]:
        baseline = float(history[source].mean())
        if baseline < cfg.min_baseline_share:
            continue  # new or negligible sources have no baseline to drop from
        share = float(today[source])
        floor = baseline * (1 - cfg.max_share_drop)
        detail = f"share {share:.2%} vs baseline {baseline:.2%} over {history['dt'].nunique()} days"
        results.append(
            judged(name, f"{cfg.source_column}={source}", share, floor, share < floor, detail, day)
        )
    return results


def anomaly(
    name: str,
    subject: str,
    value: float,
    history: np.ndarray,
    noise_floor: float,
    cfg: MonitorConfig,
    day: date,
) -> CheckResult:
    """|z| of `value` against `history` (std at least `noise_floor`), and its relative change.

    Fires only when both |z| > max_z and |relative change| > min_relative_change, so a quiet
    history does not page on tiny moves and a noisy one does not page on normal swings.
    """
    mean = float(history.mean())
    std = max(float(history.std(ddof=1)) if len(history) > 1 else 0.0, noise_floor, 1e-12)
    z = (value - mean) / std
    change = (value - mean) / mean if mean else math.inf
    firing = abs(z) > cfg.max_z and abs(change) > cfg.min_relative_change
    detail = f"{value:.6g} vs mean {mean:.6g} over {len(history)} days: z={z:+.1f}, {change:+.1%}"
    return judged(name, subject, abs(z), cfg.max_z, firing, detail, day)


def volume_ctr_checks(
    daily: pd.DataFrame, day: date, cfg: MonitorConfig, action: str = "click"
) -> list[CheckResult]:
    """Impression volume and CTR of `day` against the trailing days (`daily`: dt, impressions, ctr).

    CTR's spread is at least its binomial standard error on the day's volume. A day without any
    impression has volume 0 (a total outage fires) and no CTR.
    """
    history = _baseline(daily, day, cfg)
    if len(history) < cfg.min_baseline_days:
        reason = f"{len(history)} baseline days, need {cfg.min_baseline_days}"
        return [skipped(n, s, reason, day) for n, s in (("volume", "impressions"), ("ctr", action))]
    rows = daily[daily["dt"] == day]
    volume = float(rows["impressions"].sum())
    volumes = history["impressions"].to_numpy(dtype=float)
    results = [
        anomaly("volume", "impressions", volume, volumes, math.sqrt(volumes.mean()), cfg, day)
    ]
    if rows.empty:
        return [*results, skipped("ctr", action, f"no impressions on {day}", day)]
    ctr = float(rows.iloc[0]["ctr"])
    mean_ctr = float(history["ctr"].mean())
    binomial = math.sqrt(max(mean_ctr * (1 - mean_ctr), 0.0) / max(volume, 1.0))
    ctrs = history["ctr"].to_numpy(dtype=float)
    return [*results, anomaly("ctr", action, ctr, ctrs, binomial, cfg, day)]
