"""Which columns of an examples table the model reads, and Arrow data -> torch tensors.

Column contract (`freshlake.contract`): categorical feature `x` -> `f_x` bigint hash bucket;
numeric -> `f_x` double plus `f_x_missing` 0/1; text -> `f_x` array<bigint> of n-gram hash ids.

The loader decodes a whole block of rows at once (`to_batch` with the block's row order, its
filter and shuffle applied in the same copy of each column, read from zero-copy numpy views of
the Arrow buffers and written straight into one allocation for the block) and hands out batches
as views of that block (`Batch.split`): no per-batch conversion, no per-row Python. A row order
is either row indices (one gather per column) or `RowRuns`, runs of consecutive stored rows
(one slice copy per run and column: the cost of a copy in stored order).
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from freshlake import contract
from freshlake.config import FeatureSpec

Column = pa.ChunkedArray | pa.Array


@dataclass(frozen=True)
class RowRuns:
    """A row order made of runs of consecutive stored rows, each `(start, stop)`, run after
    run. Decoding it copies slices, where row indices need a gather per value."""

    runs: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return self.copies[-1][0].stop if self.copies else 0

    @cached_property
    def copies(self) -> tuple[tuple[slice, slice], ...]:
        """(delivered rows, stored rows) of each run as slices, computed once per order: a
        column is then copied with one slice assignment per run."""
        copies, at = [], 0
        for start, stop in self.runs:
            copies.append((slice(at, at + stop - start), slice(start, stop)))
            at += stop - start
        return tuple(copies)

    def indices(self) -> np.ndarray:
        """The same order as row indices."""
        parts = [np.arange(start, stop, dtype=np.int64) for start, stop in self.runs]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


Order = np.ndarray | RowRuns | None  # None: every row as stored


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
        each batch's text offsets are rebased to its first id in one subtraction of its own
        (no temporary of the block's size)."""
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
            # bounds[i] is batch i's first id (the last bound ends the last batch)
            rebased = [piece - base for piece, base in zip(pieces(offsets), bounds, strict=False)]
            bags.append((id_pieces, rebased))
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


class _Scratch(threading.local):
    """Per-thread work arrays reused from block to block (never handed out).

    Temporaries of a block's size, allocated anew per block, were mapped afresh by the
    allocator each time: a page fault per 4 KiB, which cost as much as the gathers themselves.
    """

    def __init__(self) -> None:
        self.arrays: dict[tuple[str, np.dtype], np.ndarray] = {}

    def get(self, name: str, count: int, dtype: type) -> np.ndarray:
        key = (name, np.dtype(dtype))
        array = self.arrays.get(key)
        if array is None or len(array) < count:
            array = self.arrays[key] = np.empty(max(count, 1024), dtype=dtype)
        return array[:count]


_scratch = _Scratch()


class _ArenaPool:
    """Arena memory handed from block to block.

    A block's memory returns here once nothing views it any more (a finalizer on the object
    the block's arrays are carved from), and the next block reuses it. Fresh memory costs a
    page fault and a page zeroing per 4 KiB on first touch, which cost as much as the decode
    itself in worker threads, whose allocator arenas give freed blocks back to the system.
    """

    KEEP = 6  # free buffers kept at most
    ROUND = 1 << 20  # sizes rounded up to whole MiB, so one buffer fits many blocks

    def __init__(self) -> None:
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> ctypes.Array:
        """`size` bytes of pooled memory, which go back to the pool when the returned object and
        every array made from it (`np.frombuffer`) are gone."""
        with self._lock:
            fits = [i for i, b in enumerate(self._free) if len(b) >= size]
            best = min(fits, key=lambda i: len(self._free[i])) if fits else None
            buffer = self._free.pop(best) if best is not None else None
        if buffer is None:
            buffer = np.empty(-(-size // self.ROUND) * self.ROUND, dtype=np.uint8)
        # A ctypes view: numpy arrays made from it keep it as their base (a numpy view would
        # be skipped for the array owning the memory), so its finalizer runs after theirs.
        root = (ctypes.c_char * size).from_buffer(buffer)
        weakref.finalize(root, self._give_back, buffer)
        return root

    def _give_back(self, buffer: np.ndarray) -> None:
        with self._lock:
            if len(self._free) < self.KEEP:
                self._free.append(buffer)


_arena_pool = _ArenaPool()


class _Arena:
    """One allocation holding every output array of a block, carved into aligned pieces.

    The block's tensors are views of it, so the memory lives while any batch of the block does.
    One allocation per block instead of one per column keeps the allocator's work to a single
    region, which is reused by later blocks (`_ArenaPool`).
    """

    ALIGN = 64

    def __init__(self, sizes: Sequence[tuple[int, type]]):
        self._offsets, total = [], 0
        for count, dtype in sizes:
            self._offsets.append(total)
            total += -(-count * np.dtype(dtype).itemsize // self.ALIGN) * self.ALIGN
        self._buffer = _arena_pool.take(max(total, 1))
        self._sizes, self._next = list(sizes), 0

    def take(self) -> np.ndarray:
        """The next piece, in the order of `sizes`."""
        count, dtype = self._sizes[self._next]
        start = self._offsets[self._next]
        self._next += 1
        return np.frombuffer(self._buffer, dtype=dtype, count=count, offset=start)


def _array(column: Column) -> pa.Array:
    """One contiguous Arrow array of a column (no copy when it has one chunk)."""
    if isinstance(column, pa.Array):
        return column
    if column.num_chunks == 1:
        return column.chunk(0)
    return column.combine_chunks() if column.num_chunks else pa.array([], column.type)


def _source(column: Column, fill: float = 0) -> np.ndarray:
    """A numeric column as numpy, nulls filled: a view of Arrow's memory when it has no nulls."""
    array = _array(column)
    if array.null_count:
        array = pc.fill_null(array, pa.scalar(fill).cast(array.type))
    return array.to_numpy(zero_copy_only=False)


def _gather(values: np.ndarray, order: Order, out: np.ndarray) -> np.ndarray:
    """`values[order]` (or all `values`) written into `out`, converted to its dtype."""
    if order is None:
        np.copyto(out, values, casting="unsafe")
    elif isinstance(order, RowRuns):
        for delivered, stored in order.copies:
            out[delivered] = values[stored]  # converted as np.copyto(casting="unsafe") does
    elif values.dtype == out.dtype:  # order holds valid indices only: no bounds checks
        np.take(values, order, out=out, mode="clip")
    else:
        picked = _scratch.get("gather", len(order), values.dtype)
        np.take(values, order, out=picked, mode="clip")
        np.copyto(out, picked, casting="unsafe")
    return out


class _Bag:
    """A list<int> column's rows as EmbeddingBag ids and offsets, sized before it is filled."""

    def __init__(self, column: Column, order: Order):
        array = _array(column)
        n = len(array)
        offsets = np.frombuffer(array.buffers()[1], dtype=_offset_type(array.type))
        self.offsets = offsets = offsets[array.offset : array.offset + n + 1]
        self.values = _source(array.values)  # the child as stored; offsets index into it
        lengths = np.diff(offsets).astype(np.int64, copy=False) if array.null_count else None
        if array.null_count:  # a null list is an empty bag, whatever its offsets span
            valid = array.is_valid().to_numpy(zero_copy_only=False)
            spans = bool(lengths[~valid].any())
            lengths = np.where(valid, lengths, 0)
        else:
            spans = False
        # Runs of rows whose bags lie back to back in the child: their ids are copied as one
        # slice and their offsets shifted, with no per-row lengths.
        self.runs: tuple[tuple[int, int], ...] | None = None
        if not spans and not isinstance(order, np.ndarray):
            self.runs = ((0, n),) if order is None else order.runs
            self.rows = n if order is None else len(order)
            # (first id, end id) of each run, read in one gather
            ends = offsets[np.asarray(self.runs, dtype=np.int64).reshape(-1, 2)]
            self.id_runs: list[list[int]] = ends.tolist()
            self.total = int((ends[:, 1] - ends[:, 0]).sum())
            return
        if lengths is None:
            lengths = np.diff(offsets).astype(np.int64, copy=False)
        starts = offsets[:-1]
        if order is not None:
            rows = order.indices() if isinstance(order, RowRuns) else order
            lengths = np.take(lengths, rows, mode="clip")
            starts = np.take(starts, rows, mode="clip")
        self.starts, self.lengths = starts, lengths
        self.rows, self.total = len(lengths), int(lengths.sum())

    def fill(self, ids: np.ndarray, offsets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if self.runs is not None:
            row = at = 0
            for (a, b), (first, end) in zip(self.runs, self.id_runs, strict=True):
                np.subtract(
                    self.offsets[a:b], first - at, out=offsets[row : row + b - a], dtype=np.int64
                )
                ids[at : at + end - first] = self.values[first:end]
                row, at = row + b - a, at + end - first
            return torch.from_numpy(ids), torch.from_numpy(offsets)
        if self.rows:
            offsets[0] = 0
            np.cumsum(self.lengths[:-1], out=offsets[1:])
        if self.total:
            # Position j of bag i reads child[start_i + j]: a step of 1 along a bag, a jump to
            # the next non-empty bag's start at its first id; the running sum is every index.
            step = _scratch.get("step", self.total, np.int64)
            step.fill(1)
            full = self.lengths > 0
            firsts, starts = offsets[full], self.starts[full].astype(np.int64)
            step[firsts[0]] = starts[0]
            step[firsts[1:]] = starts[1:] - (starts[:-1] + self.lengths[full][:-1] - 1)
            np.cumsum(step, out=step)
            _gather(self.values, step, ids)
        return torch.from_numpy(ids), torch.from_numpy(offsets)


def _offset_type(data_type: pa.DataType) -> type:
    return np.int64 if pa.types.is_large_list(data_type) else np.int32


def to_batch(
    table: pa.Table | pa.RecordBatch,
    layout: FeatureLayout,
    extras: Sequence[str] = (),
    order: Order = None,
) -> Batch:
    """Tensors of a table's rows: all, or those of `order` (row indices or `RowRuns`: filtered,
    shuffled).

    Each column is copied once, straight into the block's arena (no per-column allocation);
    Arrow data is read through zero-copy numpy views. Nulls: id 0, value 0, empty bag, weight 1.
    """
    n = table.num_rows if order is None else len(order)
    bags = [_Bag(table.column(c), order) for c in layout.text]
    dense = [
        (len(layout.categorical) * n, np.int64),
        (len(layout.numeric) * n, np.float32),
        (n, np.float32),  # label
        (n, np.float32),  # weight
        *((n, np.float64) for _ in extras),
    ]
    arena = _Arena([*dense, *((size, np.int64) for bag in bags for size in (bag.total, n))])

    def matrix(names: Sequence[str], dtype: type) -> torch.Tensor:
        out = arena.take().reshape(len(names), n)  # stored column by column
        for row, name in zip(out, names, strict=True):
            _gather(_source(table.column(name)), order, row)
        return torch.from_numpy(out).T

    def vector(name: str | None, fill: float = 0) -> torch.Tensor:
        out = arena.take()
        if name is None:
            out.fill(fill)
        else:
            _gather(_source(table.column(name), fill), order, out)
        return torch.from_numpy(out)

    categorical = matrix(layout.categorical, np.int64)
    numeric = matrix(layout.numeric, np.float32)
    label = vector(layout.label)
    weight = vector(layout.weight, fill=1.0)
    extra = {c: vector(c) for c in extras}
    filled = [bag.fill(arena.take(), arena.take()) for bag in bags]
    return Batch(
        categorical=categorical,
        numeric=numeric,
        text_ids=[ids for ids, _ in filled],
        text_offsets=[offsets for _, offsets in filled],
        label=label,
        weight=weight,
        extras=extra,
    )
