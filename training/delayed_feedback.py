"""Delayed feedback on the online joiner's rows (`fresh_examples`).

The joiner writes a positive as soon as its click arrives and a negative only once the
watermark has passed the end of its attribution window. A snapshot taken at time T therefore
holds every row served before the *maturity cutoff* T - window - watermark delay (positives and
negatives alike) but, for rows served after it, only the positives whose click has already
arrived: trained on as is, the model over-predicts by as much as the unmatured share of traffic.

Modes (`training.delayed_feedback`):

- `none`: every row as written (biased upward while windows are open).
- `matured_only`: only rows served before the cutoff, whose outcome is final. Unbiased; the
  freshest clicks wait one window.
- `importance`: importance weighting in the manner of ES-DFM (Yang et al., AAAI 2021): every
  row weighted by p(y|x) / q(y|x), the ratio of the true label distribution to the one the
  snapshot shows, here for a joiner that writes positives at once and negatives at window close.
  A positive served at s after the cutoff was observed only if its click came within T - s, so
  it counts 1 / F(T - s), F the click-delay distribution measured on matured positives; the
  unmatured negatives are missing altogether, so matured negatives stand in for them, weighted
  1 + r with r the unmatured over matured traffic (estimated as the ratio of their positives,
  the unmatured ones delay-corrected). Keeps the freshest clicks and stays calibrated.

Recalibration rows (`training.recalibration_share`): the newest share of the matured span
(served between `holdout_after` and the cutoff) is held out of training, and the output bias is
refit on it afterwards. A bias refit on the rows a model was just trained on leaves it calibrated
there but over-predicting new rows (the id embeddings have absorbed those rows' label noise); on
the freshest matured rows it has not seen, the refit measures the model on the traffic it is
about to serve.

T is the latest `served_at` or `first_action_at` in the snapshot. The cutoff is also never
after the newest negative's `served_at`: the joiner writes negatives in served order once its
watermark passes their window, so that is how far it has decided (early in a stream, its
watermark lags T by more than the window and delay).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshlake import contract
from freshlake.training.batch import FeatureLayout
from freshlake.training.units import WorkUnit, read_unit

log = logging.getLogger(__name__)

Mode = Literal["none", "matured_only", "importance"]
MODES: tuple[str, ...] = ("none", "matured_only", "importance")
SERVED_AT = "served_at"
TIME_COLUMNS = (SERVED_AT, contract.FIRST_ACTION_AT)
# F(elapsed) is floored here: a click seen one second after serving must not weigh 1000x.
MIN_OBSERVED_SHARE = 0.05


def _micros(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch (null: int64 min)."""
    values = pc.cast(column, pa.timestamp("us", getattr(column.type, "tz", None)))
    out = pc.fill_null(pc.cast(values, pa.int64()), np.iinfo(np.int64).min).to_numpy()
    return np.asarray(out, dtype=np.int64)


@dataclass(frozen=True)
class DelayedFeedback:
    """How a snapshot's rows are kept and re-weighted for one mode (fit on the whole snapshot,
    so every rank and loader worker applies the same cutoff and weights)."""

    mode: str
    now_us: int = 0  # T
    cutoff_us: int = 0  # rows served at or before it are matured
    delays_s: tuple[float, ...] = ()  # sorted click delays of matured positives
    negative_factor: float = 1.0  # 1 + r for matured negatives
    stats: dict | None = None
    # Matured rows served after it (up to the cutoff) are held out for the bias refit.
    holdout_after_us: int | None = None
    # This instance selects the held-out recalibration rows only (`recalibration_rows`).
    recalibration: bool = False

    def recalibration_rows(self) -> DelayedFeedback:
        """The same fit, keeping only the held-out rows, unweighted by it (they are matured)."""
        return replace(self, recalibration=True)

    def held_out(self, served_us: np.ndarray) -> np.ndarray:
        """Which rows are recalibration rows."""
        if self.holdout_after_us is None:
            return np.zeros(len(served_us), dtype=bool)
        return (served_us > self.holdout_after_us) & (served_us <= self.cutoff_us)

    def observed_share(self, elapsed_s: np.ndarray) -> np.ndarray:
        """F(elapsed): the share of clicks that arrive within `elapsed_s` of serving."""
        delays = np.asarray(self.delays_s)
        if not len(delays):
            return np.ones_like(elapsed_s, dtype=np.float64)
        share = np.searchsorted(delays, elapsed_s, side="right") / len(delays)
        return np.maximum(share, MIN_OBSERVED_SHARE)

    def row_factors(
        self, served_us: np.ndarray, action_us: np.ndarray, label: np.ndarray
    ) -> np.ndarray:
        """Per-row weight multipliers; 0 drops the row."""
        if self.recalibration:
            return self.held_out(served_us).astype(np.float64)
        if self.mode == "none":
            return np.ones(len(label))
        matured = served_us <= self.cutoff_us
        if self.mode == "matured_only":
            factors = matured.astype(np.float64)
        else:
            positive = label > 0
            elapsed = (self.now_us - served_us) / 1e6
            factors = np.where(positive, 1.0, self.negative_factor)
            fresh_positive = positive & ~matured
            factors[fresh_positive] = 1.0 / self.observed_share(elapsed[fresh_positive])
            factors[~matured & ~positive] = 0.0  # only part of them are written yet
        factors[self.held_out(served_us)] = 0.0
        return factors

    def apply(self, table: pa.Table, layout: FeatureLayout) -> pa.Table:
        """`table` with dropped rows removed and the weight column multiplied (needs the
        layout's label and weight columns and `served_at`, `first_action_at`)."""
        if self.mode == "none" and not self.recalibration:
            return table
        label = pc.fill_null(table.column(layout.label), 0).to_numpy().astype(np.float64)
        factors = self.row_factors(
            _micros(table.column(SERVED_AT)),
            _micros(table.column(contract.FIRST_ACTION_AT)),
            label,
        )
        keep = factors > 0
        if layout.weight is not None:
            weight = pc.fill_null(table.column(layout.weight), 1.0).to_numpy().astype(np.float64)
            column = pa.array(weight * factors, table.schema.field(layout.weight).type)
            table = table.set_column(
                table.schema.get_field_index(layout.weight), layout.weight, column
            )
        return table.filter(pa.array(keep))


def _read_times(units: Sequence[WorkUnit], layout: FeatureLayout, split: str) -> dict:
    wanted = [SERVED_AT, contract.FIRST_ACTION_AT, layout.label, contract.SPLIT]
    if layout.weight:
        wanted.append(layout.weight)
    served, action, label, weight = [], [], [], []
    for unit in units:
        table = read_unit(unit, wanted)
        table = table.filter(pc.equal(table.column(contract.SPLIT), split))
        served.append(_micros(table.column(SERVED_AT)))
        action.append(_micros(table.column(contract.FIRST_ACTION_AT)))
        label.append(pc.fill_null(table.column(layout.label), 0).to_numpy().astype(np.float64))
        weight.append(
            pc.fill_null(table.column(layout.weight), 1.0).to_numpy().astype(np.float64)
            if layout.weight
            else np.ones(table.num_rows)
        )
    join = np.concatenate
    return {
        "served": join(served) if served else np.zeros(0, np.int64),
        "action": join(action) if action else np.zeros(0, np.int64),
        "label": join(label) if label else np.zeros(0),
        "weight": join(weight) if weight else np.zeros(0),
    }


def fit_delayed_feedback(
    mode: str,
    units: Sequence[WorkUnit],
    layout: FeatureLayout,
    split: str,
    *,
    window_seconds: float,
    watermark_delay_seconds: float,
    columns: Sequence[str] | None = None,
    recalibration_share: float = 0.0,
) -> DelayedFeedback:
    """The cutoff, click-delay distribution and negative factor of a snapshot's `split` rows
    (`columns`: the table's, checked for the time columns when given); the newest
    `recalibration_share` of the matured span (in served time) is held out for the bias refit."""
    if mode not in MODES:
        raise ValueError(f"unknown delayed_feedback mode {mode!r}; one of {', '.join(MODES)}")
    if mode == "none":
        return DelayedFeedback(mode)
    if columns is not None:
        missing = [c for c in TIME_COLUMNS if c not in columns]
        if missing:
            raise ValueError(
                f"delayed_feedback={mode} needs the columns {', '.join(missing)}, which the "
                "table lacks; set training.delayed_feedback=none"
            )
    rows = _read_times(units, layout, split)
    served, action, label, weight = rows["served"], rows["action"], rows["label"], rows["weight"]
    if not len(served):
        return DelayedFeedback(mode)
    now = int(max(served.max(), action.max()))
    positive = label > 0
    # The joiner writes a negative once its watermark has passed the window's end, in served
    # order: every row served before its newest negative is decided. Early in a stream its
    # watermark lags the newest event by more than the window and delay.
    frontier = int(served[~positive].max()) if (~positive).any() else np.iinfo(np.int64).min
    cutoff = min(now - int((window_seconds + watermark_delay_seconds) * 1e6), frontier)
    matured = served <= cutoff
    stats = {
        "now": str(np.datetime64(now, "us")),
        "cutoff": str(np.datetime64(cutoff, "us")) if (~positive).any() else None,
        "rows": len(served),
        "matured_rows": int(matured.sum()),
        "unmatured_positives": int((positive & ~matured).sum()),
        "unmatured_negatives_dropped": int((~positive & ~matured).sum()),
    }
    if not matured.any():
        log.warning(
            "no row of the snapshot was served before the maturity cutoff %s (window + "
            "watermark delay before its newest event): nothing to train on yet",
            stats["cutoff"],
        )
    holdout = None
    if recalibration_share > 0 and matured.any():
        span = cutoff - int(served[matured].min())
        holdout = cutoff - int(recalibration_share * span)
        held = matured & (served > holdout)
        stats["recalibration_after"] = str(np.datetime64(holdout, "us"))
        stats["recalibration_rows"] = int(held.sum())
        stats["recalibration_clicks"] = int((held & positive).sum())
    trained = matured if holdout is None else matured & (served <= holdout)
    if mode == "matured_only":
        return DelayedFeedback(mode, now, cutoff, stats=stats, holdout_after_us=holdout)
    matured_positive = matured & positive & (action > np.iinfo(np.int64).min)
    if not matured_positive.any():
        log.warning(
            "importance weighting needs matured clicks to measure click delays from and none "
            "was served before %s: training on the matured rows only",
            stats["cutoff"],
        )
        return DelayedFeedback("matured_only", now, cutoff, stats=stats, holdout_after_us=holdout)
    delays = np.sort((action[matured_positive] - served[matured_positive]) / 1e6)
    model = DelayedFeedback(mode, now, cutoff, tuple(delays.tolist()))
    fresh_positive = positive & ~matured
    elapsed = (now - served[fresh_positive]) / 1e6
    unmatured_clicks = float((weight[fresh_positive] / model.observed_share(elapsed)).sum())
    # The matured negatives that are trained on stand in for the unmatured ones: the ratio is
    # to the matured traffic that is trained on (the recalibration rows are not).
    matured_clicks = float(weight[trained & positive].sum())
    ratio = unmatured_clicks / matured_clicks if matured_clicks > 0 else 0.0
    stats.update(
        {
            "click_delay_p50_s": float(np.median(delays)),
            "unmatured_over_matured_traffic": ratio,
        }
    )
    return DelayedFeedback(
        mode, now, cutoff, model.delays_s, 1.0 + ratio, stats, holdout_after_us=holdout
    )


@dataclass(frozen=True)
class FeedbackRows:
    """The loader's block transform (`DeltaExamples(transform=...)`): a block's rows as a
    fitted `DelayedFeedback` keeps and weights them; it reads the time columns, which the
    batches do not carry."""

    feedback: DelayedFeedback
    layout: FeatureLayout
    columns: tuple[str, ...] = TIME_COLUMNS

    def __call__(self, table: pa.Table) -> pa.Table:
        return self.feedback.apply(table, self.layout)
