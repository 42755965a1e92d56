"""Which columns of an examples table the model reads, and Arrow data -> torch tensors.

Column contract (`freshlake.contract`): categorical feature `x` -> `f_x` bigint hash bucket;
numeric -> `f_x` double plus `f_x_missing` 0/1; text -> `f_x` array<bigint> of n-gram hash ids.

The loader decodes a whole block of rows at once (`to_batch` with the block's row order, its
filter and shuffle in one gather per column) and hands out batches as views of that block
(`Batch.rows`): no per-batch conversion, no per-row Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from freshlake import contract
from freshlake.config import FeatureSpec

Column = pa.ChunkedArray | pa.Array


@dataclass(frozen=True)
class FeatureLayout:
    """The model's inputs, in a fixed order, as column names of the examples table."""

    categorical: tuple[str, ...]
    numeric: tuple[str, ...]  # values and missing flags, each one dense float input
    text: tuple[str, ...]
    label: str = contract.LABEL
    weight: str | None = contract.WEIGHT
    buckets: dict[str, int] = field(default_factory=dict)  # column -> hash buckets

    @classmethod
    def from_spec(
        cls,
        spec: Sequence[FeatureSpec],
        table_columns: Iterable[str] | None = None,
        label: str = contract.LABEL,
        weight: str | None = contract.WEIGHT,
    ) -> FeatureLayout:
        """The layout of `spec`; with `table_columns`, check they exist (missing flags optional)."""
        available = set(table_columns) if table_columns is not None else None
        categorical, numeric, text, buckets = [], [], [], {}
        for feature in spec:
            column = contract.feature_column(feature.name)
            if feature.kind == "categorical":
                categorical.append(column)
                buckets[column] = feature.buckets
            elif feature.kind == "text":
                text.append(column)
                buckets[column] = feature.buckets
            else:
                numeric.append(column)
                flag = contract.missing_column(feature.name)
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

    def _map(self, move) -> Batch:
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

    def to(self, device: torch.device | str) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> Batch:
        """The batch in page-locked memory, so copies to a GPU run asynchronously."""
        return self._map(lambda t: t.pin_memory())

    def split(self, cuts: Sequence[int]) -> list[Batch]:
        """Views of the rows between consecutive `cuts` (ascending row numbers), one batch each.

        One tensor_split per tensor, so cutting a block into batches costs little per batch;
        only the text offsets are rebased per batch."""
        first, last, n = cuts[0], cuts[-1], len(self)
        inner = [cut - first for cut in cuts[1:-1]]

        def pieces(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tensor[first:last].tensor_split(inner)

        dense = [pieces(t) for t in (self.categorical, self.numeric, self.label, self.weight)]
        extras = {name: pieces(t) for name, t in self.extras.items()}
        bags = []
        for ids, offsets in zip(self.text_ids, self.text_offsets, strict=True):
            at = offsets.numpy()
            bounds = [int(at[cut]) if cut < n else ids.numel() for cut in cuts]
            id_pieces = ids[bounds[0] : bounds[-1]].tensor_split(
                [b - bounds[0] for b in bounds[1:-1]]
            )
            offset_pieces = [
                offsets[a:b] - base for a, b, base in zip(cuts, cuts[1:], bounds, strict=False)
            ]
            bags.append((id_pieces, offset_pieces))
        return [
            Batch(
                dense[0][i],
                dense[1][i],
                [ids[i] for ids, _ in bags],
                [offsets[i] for _, offsets in bags],
                dense[2][i],
                dense[3][i],
                {name: parts[i] for name, parts in extras.items()},
            )
            for i in range(len(cuts) - 1)
        ]


def concat_batches(parts: Sequence[Batch]) -> Batch:
    """The rows of `parts`, in order, as one batch (a copy; for batches that span blocks)."""
    if len(parts) == 1:
        return parts[0]
    ids, offsets = [], []
    for i in range(len(parts[0].text_ids)):
        shifts = np.cumsum([0] + [p.text_ids[i].numel() for p in parts[:-1]])
        ids.append(torch.cat([p.text_ids[i] for p in parts]))
        offsets.append(
            torch.cat([p.text_offsets[i] + int(s) for p, s in zip(parts, shifts, strict=True)])
        )
    return Batch(
        torch.cat([p.categorical for p in parts]),
        torch.cat([p.numeric for p in parts]),
        ids,
        offsets,
        torch.cat([p.label for p in parts]),
        torch.cat([p.weight for p in parts]),
        {k: torch.cat([p.extras[k] for p in parts]) for k in parts[0].extras},
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


def _empty(count: int, dtype: type) -> np.ndarray:
    """An uninitialised array in Arrow's memory pool.

    The pool reuses its pages from block to block; fresh numpy arrays of a block's size were
    mapped anew each time, a page fault per 4 KiB that cost a third of the decode.
    """
    dtype = np.dtype(dtype)
    buffer = pa.allocate_buffer(max(count * dtype.itemsize, 1))
    return np.frombuffer(buffer, dtype=dtype, count=count)


def _array(column: Column) -> pa.Array:
    """One contiguous Arrow array of a column (no copy when it has one chunk)."""
    if isinstance(column, pa.Array):
        return column
    if column.num_chunks == 1:
        return column.chunk(0)
    return column.combine_chunks() if column.num_chunks else pa.array([], column.type)


def _values(column: Column, dtype: type, fill: float = 0) -> np.ndarray:
    """A numeric column as a read-only numpy view of Arrow memory, nulls filled, as `dtype`."""
    array = _array(column)
    if array.null_count:
        array = pc.fill_null(array, fill)
    target = pa.from_numpy_dtype(dtype)
    if array.type != target:
        array = array.cast(target)
    return array.to_numpy(zero_copy_only=False)


def _gather(values: np.ndarray, order: np.ndarray | None, out: np.ndarray) -> np.ndarray:
    """`values[order]` (or all `values`) written into `out`."""
    if order is None:
        out[...] = values
    else:  # order holds valid indices only: no bounds checks ("clip")
        np.take(values, order, out=out, mode="clip")
    return out


def _matrix(
    table: pa.Table | pa.RecordBatch,
    names: Sequence[str],
    dtype: type,
    order: np.ndarray | None,
    n: int,
) -> torch.Tensor:
    """Columns `names` as an [n, len(names)] tensor, stored column by column."""
    out = _empty(len(names) * n, dtype).reshape(len(names), n)
    for row, name in zip(out, names, strict=True):
        _gather(_values(table.column(name), dtype), order, row)
    return torch.from_numpy(out).T


def _vector(
    column: Column, dtype: type, order: np.ndarray | None, n: int, fill: float = 0
) -> torch.Tensor:
    return torch.from_numpy(_gather(_values(column, dtype, fill), order, _empty(n, dtype)))


def _bags(column: Column, order: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A list<int> column as EmbeddingBag ids and offsets (a null list is an empty bag)."""
    array = _array(column)
    if order is not None:
        array = array.take(pa.array(order))
    lengths = _values(pc.list_value_length(array), np.int64)
    offsets = _empty(len(lengths), np.int64)
    if len(lengths):
        offsets[0] = 0
        np.cumsum(lengths[:-1], out=offsets[1:])
    values = _values(pc.list_flatten(array), np.int64)
    ids = _gather(values, None, _empty(len(values), np.int64))  # writable, for torch
    return torch.from_numpy(ids), torch.from_numpy(offsets)


def to_batch(
    table: pa.Table | pa.RecordBatch,
    layout: FeatureLayout,
    extras: Sequence[str] = (),
    order: np.ndarray | None = None,
) -> Batch:
    """Tensors of a table's rows: all, or those at the indices `order` (filtered, shuffled).

    Nulls: id 0, value 0, empty bag, weight 1.
    """
    n = table.num_rows if order is None else len(order)
    bags = [_bags(table.column(c), order) for c in layout.text]
    weight = (
        _vector(table.column(layout.weight), np.float32, order, n, fill=1.0)
        if layout.weight
        else torch.ones(n, dtype=torch.float32)
    )
    return Batch(
        categorical=_matrix(table, layout.categorical, np.int64, order, n),
        numeric=_matrix(table, layout.numeric, np.float32, order, n),
        text_ids=[ids for ids, _ in bags],
        text_offsets=[offsets for _, offsets in bags],
        label=_vector(table.column(layout.label), np.float32, order, n),
        weight=weight,
        extras={c: _vector(table.column(c), np.float64, order, n) for c in extras},
    )
