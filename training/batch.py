"""Which columns of an examples table the model reads, and Arrow record batches -> torch tensors.

Column contract (examples / fresh_examples, team contract 3): categorical feature `x` ->
`f_x` bigint hash bucket; numeric -> `f_x` double plus `f_x_missing` 0/1; text -> `f_x`
array<bigint> of n-gram hash ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from freshlake.config import FeatureSpec


@dataclass(frozen=True)
class FeatureLayout:
    """The model's inputs, in a fixed order, as column names of the examples table."""

    categorical: tuple[str, ...]
    numeric: tuple[str, ...]  # values and missing flags, each one dense float input
    text: tuple[str, ...]
    label: str = "label"
    weight: str | None = "weight"
    buckets: dict[str, int] = field(default_factory=dict)  # column -> hash buckets

    @classmethod
    def from_spec(
        cls,
        spec: Sequence[FeatureSpec],
        table_columns: Iterable[str] | None = None,
        label: str = "label",
        weight: str | None = "weight",
    ) -> FeatureLayout:
        """The layout of `spec`; with `table_columns`, check they exist (missing flags optional)."""
        available = set(table_columns) if table_columns is not None else None
        categorical, numeric, text, buckets = [], [], [], {}
        for feature in spec:
            column = f"f_{feature.name}"
            if feature.kind == "categorical":
                categorical.append(column)
                buckets[column] = feature.buckets
            elif feature.kind == "text":
                text.append(column)
                buckets[column] = feature.buckets
            else:
                numeric.append(column)
                flag = f"{column}_missing"
                if available is None or flag in available:
                    numeric.append(flag)
        layout = cls(tuple(categorical), tuple(numeric), tuple(text), label, weight, buckets)
        if available is not None:
            missing = [c for c in layout.columns() if c not in available]
            if missing:
                raise ValueError(
                    f"the table lacks columns the feature spec needs: {missing} "
                    "(was it built with the same features.spec?)"
                )
        return layout

    def columns(self) -> list[str]:
        """Every column the loader reads for training (features, label, weight)."""
        extra = [self.label] + ([self.weight] if self.weight else [])
        return [*self.categorical, *self.numeric, *self.text, *extra]


@dataclass
class Batch:
    """One batch of model inputs as tensors, plus where the loader stands after it."""

    categorical: torch.Tensor  # int64 [n, n_categorical]
    numeric: torch.Tensor  # float32 [n, n_numeric]
    text_ids: list[torch.Tensor]  # per text feature: int64 [total ids]
    text_offsets: list[torch.Tensor]  # per text feature: int64 [n], EmbeddingBag offsets
    label: torch.Tensor  # float32 [n]
    weight: torch.Tensor  # float32 [n]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    # Loader position after this batch: (epoch, shard, block, row); None for other loaders.
    position: tuple[int, int, int, int] | None = None

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True)

        return Batch(
            move(self.categorical),
            move(self.numeric),
            [move(t) for t in self.text_ids],
            [move(t) for t in self.text_offsets],
            move(self.label),
            move(self.weight),
            {k: move(v) for k, v in self.extras.items()},
            self.position,
        )


def empty_batch(layout: FeatureLayout) -> Batch:
    """A batch of zero rows: what a rank whose shards are exhausted feeds its lockstep steps."""
    no_ids = torch.zeros(0, dtype=torch.int64)
    return Batch(
        categorical=torch.zeros((0, len(layout.categorical)), dtype=torch.int64),
        numeric=torch.zeros((0, len(layout.numeric)), dtype=torch.float32),
        text_ids=[no_ids for _ in layout.text],
        text_offsets=[no_ids for _ in layout.text],
        label=torch.zeros(0, dtype=torch.float32),
        weight=torch.zeros(0, dtype=torch.float32),
    )


def _numpy(column: pa.ChunkedArray | pa.Array, dtype: type, fill: float = 0) -> np.ndarray:
    return np.array(pc.fill_null(column, fill).to_numpy(zero_copy_only=False), dtype=dtype)


def _bags(column: pa.ChunkedArray | pa.Array) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    lengths = _numpy(pc.list_value_length(column), np.int64)
    ids = _numpy(pc.list_flatten(column), np.int64)
    offsets = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    return torch.from_numpy(ids), torch.from_numpy(offsets)


def to_batch(table: pa.Table | pa.RecordBatch, layout: FeatureLayout, extras=()) -> Batch:
    """Tensors of one Arrow table or record batch (nulls: id 0, value 0, empty bag, weight 1)."""
    n = table.num_rows

    def matrix(names: Sequence[str], dtype: type) -> np.ndarray:
        if not names:
            return np.zeros((n, 0), dtype=dtype)
        return np.stack([_numpy(table.column(c), dtype) for c in names], axis=1)

    bags = [_bags(table.column(c)) for c in layout.text]
    weight = (
        torch.from_numpy(_numpy(table.column(layout.weight), np.float32, 1.0))
        if layout.weight
        else torch.ones(n, dtype=torch.float32)
    )
    return Batch(
        categorical=torch.from_numpy(matrix(layout.categorical, np.int64)),
        numeric=torch.from_numpy(matrix(layout.numeric, np.float32)),
        text_ids=[ids for ids, _ in bags],
        text_offsets=[offsets for _, offsets in bags],
        label=torch.from_numpy(_numpy(table.column(layout.label), np.float32)),
        weight=weight,
        extras={c: torch.from_numpy(_numpy(table.column(c), np.float64)) for c in extras},
    )
