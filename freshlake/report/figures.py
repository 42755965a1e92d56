"""The report's plots as base64 PNG strings.

Figures are built with matplotlib's object API (`Figure`, no pyplot state), so they render with
the Agg backend in any process, with or without a display.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from freshlake.report.calibration import Calibration

SIZE = (7.5, 3.2)


def png_base64(fig: Figure) -> str:
    """Render and close `fig`; its PNG bytes as base64 text."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def ctr_by_day(daily: pd.DataFrame) -> str:
    """CTR line and impression bars per day (`daily`: dt, impressions, ctr)."""
    fig = Figure(figsize=SIZE)
    ax = fig.subplots()
    days = pd.to_datetime(daily["dt"])
    ax.bar(days, daily["impressions"], color="#cfd8e3", label="impressions")
    ax.set_ylabel("impressions")
    right = ax.twinx()
    right.plot(days, daily["ctr"], marker="o", color="#c0392b", label="CTR")
    right.set_ylabel("CTR")
    right.set_ylim(bottom=0)
    fig.autofmt_xdate()
    fig.legend(loc="upper center", ncol=2, fontsize=8, bbox_to_anchor=(0.5, 1.08))
    return png_base64(fig)


def source_shares(counts: pd.DataFrame, source_column: str) -> str:
    """Stacked share of impressions per source per day (`counts`: dt, source, impressions)."""
    table = counts.pivot_table(
        index="dt", columns="source", values="impressions", aggfunc="sum", fill_value=0
    )
    shares = table.div(table.sum(axis=1), axis=0)
    fig = Figure(figsize=SIZE)
    ax = fig.subplots()
    days = pd.to_datetime(shares.index)
    ax.stackplot(days, shares.T.to_numpy(), labels=[str(c) for c in shares.columns], alpha=0.85)
    ax.set(ylim=(0, 1), ylabel=f"share of impressions by {source_column}")
    ax.legend(loc="upper left", fontsize=8, ncol=min(len(shares.columns), 6))
    fig.autofmt_xdate()
    return png_base64(fig)


def stratum_composition(composition: pd.DataFrame) -> str:
    """Kept rows per stratum, and the impressions they represent, for each examples table."""
    fig = Figure(figsize=SIZE)
    axes = fig.subplots(1, 2)
    for ax, column, title in (
        (axes[0], "rows", "kept rows"),
        (axes[1], "represented", "impressions represented (sum 1/sample_prob)"),
    ):
        table = composition.pivot_table(
            index="table", columns="stratum", values=column, aggfunc="sum", fill_value=0
        )
        table.plot.bar(stacked=True, ax=ax, rot=0, legend=ax is axes[1])
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("")
    axes[1].legend(fontsize=7)
    return png_base64(fig)


def calibration_curve(cal: Calibration) -> str:
    """Observed CTR against mean prediction per bin, log-log, with the diagonal."""
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    positive = cal.observed[cal.observed > 0]
    low = max(min(cal.predicted.min(initial=1), positive.min(initial=1)) / 2, 1e-5)
    ax.plot([low, 1], [low, 1], color="grey", linestyle="--", label="perfect")
    ax.plot(cal.predicted, np.maximum(cal.observed, low), marker="o", label="model")
    ax.set(xscale="log", yscale="log", xlabel="mean prediction", ylabel="observed CTR (weighted)")
    ax.legend(fontsize=8)
    return png_base64(fig)


def latency_histogram(latencies: pd.DataFrame) -> str:
    """Histogram of per micro-batch p50 and p99 action -> commit latency (seconds)."""
    fig = Figure(figsize=SIZE)
    ax = fig.subplots()
    series = {
        label: latencies[column].dropna().to_numpy(dtype=float)
        for column, label in (
            ("latency_p50_s", "p50 per batch"),
            ("latency_p99_s", "p99 per batch"),
        )
    }
    edges = np.histogram_bin_edges(np.concatenate(list(series.values())), bins=30)
    for label, values in series.items():
        ax.hist(values, bins=edges, alpha=0.6, label=label)
    ax.set(xlabel="seconds from action to committed example", ylabel="micro-batches")
    ax.legend(fontsize=8)
    return png_base64(fig)
