"""The default loader: batches of a pinned Delta snapshot, for one DDP rank.

`DeltaExamples.batches(num_workers)` is what the trainer iterates: each of the rank's shards is
read block by block (a block: about `shuffle_buffer` rows of consecutive work units), a block is
decoded once into tensors with its filter and shuffle applied in the same copy, and batches are
views of it. With 0 workers, blocks are decoded in the consuming thread while the next block is
read in a thread of its own. With `num_workers` W > 0, the rank reads W shards, decoded by
`loader_threads(W)` threads (at most W, as many as the cores beside the consumer and the reads;
0 on a 2-core host: the consuming thread decodes), each serving its shards' blocks fewest rows
first, with its shards' reads a block ahead in one thread (so a 2-core host has as many reads in
flight with W workers as with 0); decoded blocks are handed over as
they are (no copy) and cut into batches in the consuming thread. The shards, not the threads,
decide the batches. A reader keeps its last few files open, so a file's footer is parsed once,
not once per row group; a row group whose statistics rule out the filters is not read.

What the shuffle guarantees, for a given `(seed, epoch)` and world size (`shuffle` "rows" or
"blocks"; "none" keeps units and rows as stored):
- every row passing the filters is delivered exactly once per epoch across all ranks and
  workers, in the same order on every run (and after `set_epoch(..., resume=...)`);
- the work units (Parquet row groups) are in a uniformly random order, the same in every
  process, dealt round-robin to the shards;
- "rows": inside a block, the rows are in a uniformly random order (a permutation drawn from
  `(seed, epoch, shard, block)`), so a batch is a uniform sample without replacement of its
  block's rows (two blocks' rows where a batch straddles a block boundary);
- "blocks": a block's rows are cut into pieces of `batch_size` consecutive stored rows from a
  random first cut, and the pieces come in a random order (both drawn from
  `(seed, epoch, shard, block)`). Decoding copies slices instead of gathering single values,
  which costs what a copy in stored order costs. A batch is a uniform sample of its block only
  where the stored rows are in random order: the builder writes `examples` in the order of a
  hash of the impression id (`freshlake.batch.training_set.write_examples`). Rows stored next
  to each other meet in a batch again in later epochs more often than in "rows".
Neither is a global row shuffle: rows of one row group always share a block, so a row group's
rows meet in batches more often than chance would have them; a `shuffle_buffer` of several row
groups mixes them with others.

Each yielded `Batch` says where its shard stands afterwards, so a trainer can checkpoint exactly
what it consumed and `set_epoch(epoch, resume=...)` continues from there. The dataset is also a
torch `IterableDataset` (`DataLoader(dataset, batch_size=None, num_workers=W)` shards the same
way by DataLoader worker), for code that wants worker processes.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from torch.utils.data import IterableDataset, get_worker_info

from freshlake import contract
from freshlake.training.background import background, demultiplex, fewest_first, round_robin
from freshlake.training.batch import (
    Batch,
    FeatureLayout,
    Order,
    RowRuns,
    concat_batches,
    to_batch,
)
from freshlake.training.units import (
    WorkUnit,
    blocks,
    epoch_order,
    open_file,
    read_filtered,
    shard_units,
)

log = logging.getLogger(__name__)

# shard -> (block, row): the next row that shard has not yet delivered.
ShardPositions = Mapping[int, tuple[int, int]]

# Blocks a loader thread keeps decoded ahead of the batches being consumed.
DECODED_AHEAD = 2

# A block as read: its rows and the indices of those passing the filters (None: all).
Read = tuple[pa.Table, np.ndarray | None]

Shuffle = Literal["rows", "blocks", "none"]


class BlockTransform(Protocol):
    """Rewrites a block's rows after they are read and filtered, before they are decoded: drops
    rows, re-weights them (row by row: a row's fate may not depend on other rows)."""

    columns: tuple[str, ...]  # the columns it needs beyond the loader's

    def __call__(self, table: pa.Table) -> pa.Table: ...


class DeltaExamples(IterableDataset):
    """Batches of a snapshot's work units for one DDP rank, split among its loader workers."""

    def __init__(
        self,
        units: Sequence[WorkUnit],
        layout: FeatureLayout,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: Shuffle | bool = "rows",
        shuffle_buffer: int = 65_536,
        filters: Mapping[str, object] | None = None,
        extras: Sequence[str] = (),
        read_ahead: int = 1,
        pin_memory: bool = False,
        transform: BlockTransform | None = None,
    ):
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.units = list(units)
        self.layout = layout
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle_buffer = seed, shuffle_buffer
        self.shuffle: Shuffle = _shuffle_mode(shuffle)
        self.filters = dict(filters or {})
        self.extras = tuple(extras)
        self.read_ahead = read_ahead  # blocks read ahead in a thread; 0: read when decoded
        self.pin_memory = pin_memory  # decode into page-locked memory (CUDA training)
        self.transform = transform
        self.epoch = 0
        self.resume: dict[int, tuple[int, int]] = {}

    def set_epoch(self, epoch: int, resume: ShardPositions | None = None) -> None:
        """Select the epoch (and so its shuffle); `resume` continues shards mid-epoch."""
        self.epoch = epoch
        self.resume = dict(resume or {})

    def shard_blocks(self, shard: int, n_shards: int) -> list[list[WorkUnit]]:
        """The blocks shard `shard` reads this epoch, in order."""
        ordered = epoch_order(self.units, self.seed, self.epoch, self.shuffle != "none")
        return blocks(shard_units(ordered, shard, n_shards), self.shuffle_buffer)

    def batches(self, num_workers: int = 0, threads: int | None = None) -> Iterator[Batch]:
        """This rank's batches of the epoch: its shards `rank * W + w` for `w < W`
        (`W = num_workers`), one batch of each in turn (a DataLoader's order); 0 workers: one
        shard, decoded in the calling thread.

        The shards a thread decodes are read ahead in one thread; the blocks are decoded by `threads`
        threads (None: `loader_threads(W)`), each serving every `threads`-th shard, or with 0
        by the calling thread. Which thread decodes a shard changes nothing in its batches."""
        if num_workers == 0:
            return self.iter_shard(self.rank, self.world_size)
        n_shards = self.world_size * num_workers
        shards = list(range(self.rank * num_workers, (self.rank + 1) * num_workers))
        threads = min(loader_threads(num_workers) if threads is None else threads, num_workers)
        sources: dict[int, Iterator[tuple[int, Batch]]] = {}
        for served in [shards[first::threads] for first in range(threads)] if threads else [shards]:
            decoded = self._decoded(served, n_shards, self.read_ahead)
            if threads:
                decoded = background(decoded, DECODED_AHEAD, f"loader-worker-{served[0]}")
            sources.update(zip(served, demultiplex(decoded, served), strict=True))
        return round_robin([self._slice(s, n_shards, sources[s]) for s in shards])

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        shard = self.rank * n_workers + worker
        yield from self.iter_shard(shard, self.world_size * n_workers)

    def iter_shard(self, shard: int, n_shards: int) -> Iterator[Batch]:
        """Batches of one shard from its resume position to the end of the epoch."""
        decoded = (item for _, item in self._decoded([shard], n_shards, self.read_ahead))
        return self._slice(shard, n_shards, decoded)

    def _decoded(
        self, shards: Sequence[int], n_shards: int, read_ahead: int
    ) -> Iterator[tuple[int, tuple[int, Batch]]]:
        """(shard, (index, block decoded)) for the `shards`' blocks from their resume blocks on,
        the next block always of the shard with the fewest rows read so far. The shards'
        Parquet reads run `read_ahead` blocks ahead in one thread: as many reads in flight as
        with one shard, whatever the number of shards a decoding thread serves."""
        reads = fewest_first([self._read(shard, n_shards) for shard in shards], _read_rows)
        if read_ahead:
            reads = background(reads, read_ahead, f"loader-read-{shards[0]}")
        for number, (index, (table, kept)) in reads:
            shard = shards[number]
            order = self._shuffled(table.num_rows, kept, shard, index)
            block = to_batch(table, self.layout, self.extras, order)
            yield shard, (index, block.pin_memory() if self.pin_memory else block)

    def _read(self, shard: int, n_shards: int) -> Iterator[tuple[int, Read]]:
        """(index, block read) for the shard's blocks from its resume block on."""
        grouped = self.shard_blocks(shard, n_shards)
        start = self.resume.get(shard, (0, 0))[0]
        columns = list(dict.fromkeys([*self.layout.columns(), *self.extras]))
        if self.transform is None:
            read = map(_BlockReader(columns, self.filters).read, grouped[start:])
        else:
            reader = _BlockReader([*columns, *self.transform.columns], self.filters)
            read = (self._transformed(reader.read(units), columns) for units in grouped[start:])
        return enumerate(read, start)

    def _transformed(self, read: Read, columns: Sequence[str]) -> tuple[pa.Table, None]:
        """A block as read, its rows passing the filters taken, through the transform."""
        table, kept = read
        if kept is not None:
            table = table.take(kept)
        return self.transform(table).select(list(columns)), None

    def _slice(
        self, shard: int, n_shards: int, decoded: Iterable[tuple[int, Batch]]
    ) -> Iterator[Batch]:
        """Batches of `batch_size` rows cut from consecutive blocks, each with its position."""
        n_blocks = len(self.shard_blocks(shard, n_shards))
        start_block, start_row = self.resume.get(shard, (0, 0))
        carried: list[Batch] = []  # the first rows of a batch that continues in the next block
        carried_rows = 0
        for index, block in decoded:
            rows = len(block)
            cuts = _cuts(
                start_row if index == start_block else 0, rows, self.batch_size, carried_rows
            )
            for piece, end in zip(block.split(cuts), cuts[1:], strict=True):
                carried.append(piece)
                carried_rows += len(piece)
                if carried_rows == self.batch_size:
                    after = (index, end) if end < rows else (index + 1, 0)
                    yield _positioned(concat_batches(carried), (self.epoch, shard, *after))
                    carried, carried_rows = [], 0
        if carried_rows:
            yield _positioned(concat_batches(carried), (self.epoch, shard, n_blocks, 0))

    def _shuffled(self, rows: int, kept: np.ndarray | None, shard: int, index: int) -> Order:
        """The delivery order of a block of `rows` rows of which those at `kept` (None: all)
        pass the filters."""
        if kept is not None:
            rows = len(kept)
        if self.shuffle == "none" or rows < 2:
            return kept
        rng = np.random.default_rng([self.seed, self.epoch, shard, index])
        if self.shuffle == "rows":
            permutation = rng.permutation(rows)
            return permutation if kept is None else kept[permutation]
        pieces = batch_pieces(rows, self.batch_size, rng)
        return pieces if kept is None else kept[pieces.indices()]


def batch_pieces(rows: int, size: int, rng: np.random.Generator) -> RowRuns:
    """Rows `0..rows` cut into pieces of `size` consecutive rows from a random first cut (the
    pieces before it and after the last whole one are shorter), in a random order."""
    first = int(rng.integers(min(size, rows)))
    cuts = [0, *range(first, rows, size), rows]
    pieces = [(a, b) for a, b in itertools.pairwise(cuts) if b > a]
    return RowRuns(tuple(pieces[i] for i in rng.permutation(len(pieces))))


def shuffle_mode(configured: str, table: str) -> Shuffle:
    """`training.shuffle` for `table`: "auto" is "blocks" on the builder's `examples`, whose
    files hold rows in hash order, and "rows" on any other table (the online joiner writes
    `fresh_examples` in arrival order, so runs of its stored rows are runs of serving time)."""
    if configured == "auto":
        return "blocks" if table == contract.EXAMPLES else "rows"
    return _shuffle_mode(configured)


def _shuffle_mode(shuffle: Shuffle | bool) -> Shuffle:
    """True is the uniform row shuffle (what it meant before the modes), False none."""
    if isinstance(shuffle, bool):
        return "rows" if shuffle else "none"
    if shuffle not in ("rows", "blocks", "none"):
        raise ValueError(f"shuffle must be rows, blocks or none, not {shuffle!r}")
    return shuffle


class _BlockReader:
    """Reads blocks of units, keeping the last few files open: a file's footer is parsed once
    for all of its row groups the shard reads, not once per row group."""

    OPEN_FILES = 4

    def __init__(self, columns: Sequence[str], filters: Mapping[str, object]):
        self.columns = list(columns)
        self.filters = filters
        self.files: OrderedDict[str, pq.ParquetFile] = OrderedDict()

    def read(self, units: Sequence[WorkUnit]) -> Read:
        """The block's rows and the indices of those passing the filters (None: all)."""
        parts = [read_filtered(u, self.columns, self._file(u.uri), self.filters) for u in units]
        tables = [table for table, _ in parts]
        table = (
            tables[0]
            if len(tables) == 1
            else pa.concat_tables(tables, promote_options="permissive")
        )
        if all(keep is None for _, keep in parts):
            return table, None
        masks = [np.ones(t.num_rows, bool) if keep is None else keep for t, keep in parts]
        return table, np.flatnonzero(np.concatenate(masks))

    def _file(self, uri: str) -> pq.ParquetFile:
        file = self.files.pop(uri, None) or open_file(uri)
        self.files[uri] = file  # the most recently used last
        while len(self.files) > self.OPEN_FILES:
            self.files.popitem(last=False)
        return file


def loader_threads(num_workers: int) -> int:
    """Threads that decode `num_workers` loader workers' shards: the cores this process may use
    (its CPU affinity, shared with torchrun's other processes on the node, `LOCAL_WORLD_SIZE`)
    less one for the consuming thread and one for the Parquet reads, at most `num_workers`.

    0 (2 cores or fewer): the consuming thread decodes, as with 0 workers, while the shards are
    read ahead in one thread, as the one shard is with 0 workers. A decoding thread without a core of its own costs more
    than it overlaps: it competes with the reads and the consumer for the cores and the GIL
    (2 cores, 2 workers decoded by 1 thread: about twice the context switches, more CPU)."""
    per_process = process_cores(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    threads = decoding_threads(num_workers, per_process)
    if threads < num_workers:
        _log_capped(num_workers, threads, per_process)
    return threads


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's or `taskset`'s
    cpuset), else every core of the host."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def process_cores(processes: int, cores: int | None = None) -> int:
    """One process's share of a node's `cores` (by default `available_cores()`) among the
    node's `processes` (torchrun's `LOCAL_WORLD_SIZE`)."""
    return (cores or available_cores()) // max(processes, 1)


def decoding_threads(num_workers: int, cores: int) -> int:
    """Decoding threads for `num_workers` workers in a process with `cores` cores: one core is
    left to the consuming thread and one to the Parquet reads, at most `num_workers`."""
    return max(0, min(num_workers, cores - 2))


@functools.cache
def _log_capped(num_workers: int, threads: int, cores: int) -> None:
    log.info(
        "loader: %d workers' shards decoded by %d thread(s) (0: the consuming thread), "
        "their reads ahead in one thread; %d cores for this process",
        num_workers,
        threads,
        cores,
    )


def _read_rows(indexed: tuple[int, Read]) -> int:
    """Rows of a block read that pass the filters."""
    table, kept = indexed[1]
    return table.num_rows if kept is None else len(kept)


def _cuts(first: int, rows: int, size: int, carried: int) -> list[int]:
    """Row bounds that cut a block read from row `first` into the rest of a batch that has
    `carried` rows, whole batches of `size`, and a remainder carried on."""
    cuts = [first]
    if carried:
        cuts.append(min(first + size - carried, rows))
    cuts.extend(range(cuts[-1] + size, rows + 1, size))
    if cuts[-1] < rows:
        cuts.append(rows)
    return cuts


def _positioned(batch: Batch, position: tuple[int, int, int, int]) -> Batch:
    batch.position = position
    return batch
