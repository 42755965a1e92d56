"""The output bias a model starts from: the log-odds of the training rows' weighted click rate.

Starting at the base rate instead of p = 0.5 means the first steps learn which rows click more,
not the average: with bias-correction weights (`weight = 1 / sample_prob`) the weighted rate is
the rate of the full, unsampled traffic, so a fresh model is calibrated from its first step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshlake import contract
from freshlake.training.batch import FeatureLayout
from freshlake.training.units import WorkUnit, read_unit

# A rate of exactly 0 or 1 has no finite log-odds; clip to this margin.
RATE_EPS = 1e-6


def weighted_click_rate(
    units: Sequence[WorkUnit],
    layout: FeatureLayout,
    split: str,
    *,
    weighted: bool = True,
    prepare: Callable[[pa.Table], pa.Table] | None = None,
    prepare_columns: Sequence[str] = (),
) -> tuple[float, int]:
    """(sum(weight x label) / sum(weight), rows) over the `split` rows of `units`; unweighted
    (plain label mean) when `weighted` is False or the layout has no weight column. `prepare`
    (reading `prepare_columns` too) filters or re-weights each unit's rows first, as the
    training loader does."""
    use_weight = weighted and layout.weight is not None
    wanted = [layout.label, contract.SPLIT, *prepare_columns]
    if layout.weight:
        wanted.append(layout.weight)
    clicks = total = 0.0
    rows = 0
    for unit in units:
        table = read_unit(unit, list(dict.fromkeys(wanted)))
        table = table.filter(pc.equal(table.column(contract.SPLIT), split))
        if prepare is not None:
            table = prepare(table)
        label = pc.fill_null(table.column(layout.label), 0).to_numpy().astype(np.float64)
        weight = (
            pc.fill_null(table.column(layout.weight), 1.0).to_numpy().astype(np.float64)
            if use_weight
            else np.ones(table.num_rows)
        )
        clicks += float((weight * label).sum())
        total += float(weight.sum())
        rows += table.num_rows
    if total <= 0:
        return float("nan"), rows
    return clicks / total, rows


def log_odds(rate: float) -> float:
    """log(p / (1 - p)), p clipped away from 0 and 1."""
    p = min(max(rate, RATE_EPS), 1 - RATE_EPS)
    return math.log(p / (1 - p))
