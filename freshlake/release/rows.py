"""Rows of a pinned examples table as Arrow, and a saved model's predictions on them (no Spark)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from freshlake import contract
from freshlake.config import Config
from freshlake.training.artifact import load_model, read_card
from freshlake.training.batch import FeatureLayout, to_batch
from freshlake.training.scoring import card_layout
from freshlake.training.snapshot import Snapshot, open_snapshot, table_uri
from freshlake.training.units import plan_units, read_unit

# Columns the release path reads beside the model's inputs: slices, maturity, provenance.
CONTEXT_COLUMNS = ("impression_id", "served_at", "region", "surface", contract.STRATUM)


def table_snapshot(config: Config, table: str, version: int | None = None) -> Snapshot:
    """Logical table `table` of the configured lake at `version` (latest when None)."""
    uri = table_uri(config.lake.root, config.lake.table_name(table))
    return open_snapshot(uri, version, config.lake.storage_options)


def merged_layout(layouts: Sequence[FeatureLayout]) -> FeatureLayout:
    """Every input column of several models (label and weight of the first), for one read."""

    def union(field: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for layout in layouts for c in getattr(layout, field)))

    first = layouts[0]
    return FeatureLayout(
        union("categorical"), union("numeric"), union("text"), first.label, first.weight
    )


def read_rows(
    snapshot: Snapshot, layout: FeatureLayout, extra: Sequence[str] = CONTEXT_COLUMNS
) -> pa.Table:
    """Every row of the snapshot: the model's inputs, label, weight, split and `extra` columns."""
    wanted = [*layout.columns(), contract.SPLIT, contract.DT, *extra]
    columns = [c for c in dict.fromkeys(wanted) if c in snapshot.columns]
    parts = [read_unit(unit, columns) for unit in plan_units(snapshot)]
    if not parts:
        return pa.table({c: pa.array([], type=pa.null()) for c in columns})
    return pa.concat_tables(parts, promote_options="permissive")


def predict_rows(model_dir: str | Path, rows: pa.Table, batch_size: int = 8192) -> np.ndarray:
    """The saved model's click probabilities for every row of `rows`, in order."""
    model = load_model(model_dir)
    layout = card_layout(read_card(model_dir))
    out = []
    with torch.no_grad():
        for start in range(0, rows.num_rows, batch_size):
            batch = to_batch(rows.slice(start, batch_size), layout)
            out.append(model.predict(batch).numpy().astype(np.float64))
    return np.concatenate(out) if out else np.zeros(0)


def labels_and_weights(rows: pa.Table, layout: FeatureLayout) -> tuple[np.ndarray, np.ndarray]:
    """Labels (nulls 0) and weights (nulls, or no weight column, 1) as float64 arrays."""
    label = pc.fill_null(rows.column(layout.label), 0).to_numpy().astype(np.float64)
    if layout.weight and layout.weight in rows.column_names:
        weight = pc.fill_null(rows.column(layout.weight), 1.0).to_numpy().astype(np.float64)
    else:
        weight = np.ones(rows.num_rows)
    return label, weight
