"""The default loader: a Delta-log-aware torch `IterableDataset` of ready-made batches.

Use it with `DataLoader(dataset, batch_size=None, num_workers=W)`: batching happens inside,
on Arrow data, and each yielded `Batch` says where its shard stands afterwards, so a trainer
can checkpoint exactly what it consumed and `set_epoch(epoch, resume=...)` continues from there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from torch.utils.data import IterableDataset, get_worker_info

from freshlake.training.batch import Batch, FeatureLayout, to_batch
from freshlake.training.units import WorkUnit, blocks, epoch_order, read_unit, shard_units

# shard -> (block, row): the next row that shard has not yet delivered.
ShardPositions = Mapping[int, tuple[int, int]]


class DeltaExamples(IterableDataset):
    """Batches of a snapshot's work units for one DDP rank, split among its DataLoader workers."""

    def __init__(
        self,
        units: Sequence[WorkUnit],
        layout: FeatureLayout,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 65_536,
        filters: Mapping[str, object] | None = None,
        extras: Sequence[str] = (),
    ):
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.units = list(units)
        self.layout = layout
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle, self.shuffle_buffer = seed, shuffle, shuffle_buffer
        self.filters = dict(filters or {})
        self.extras = tuple(extras)
        self.epoch = 0
        self.resume: dict[int, tuple[int, int]] = {}

    def set_epoch(self, epoch: int, resume: ShardPositions | None = None) -> None:
        """Select the epoch (and so its shuffle); `resume` continues shards mid-epoch."""
        self.epoch = epoch
        self.resume = dict(resume or {})

    def _columns(self) -> list[str]:
        wanted = [*self.layout.columns(), *self.extras, *self.filters]
        return list(dict.fromkeys(wanted))

    def _read(self, units: Sequence[WorkUnit]) -> pa.Table:
        columns = self._columns()
        parts = [read_unit(u, columns) for u in units]
        table = pa.concat_tables(parts, promote_options="permissive")
        for column, value in self.filters.items():
            table = table.filter(pc.equal(table.column(column), value))
        return table

    def _block_table(self, block: Sequence[WorkUnit], shard: int, index: int) -> pa.Table:
        table = self._read(block)
        if self.shuffle and table.num_rows > 1:
            rng = np.random.default_rng([self.seed, self.epoch, shard, index])
            table = table.take(pa.array(rng.permutation(table.num_rows)))
        return table

    def shard_blocks(self, shard: int, n_shards: int) -> list[list[WorkUnit]]:
        """The blocks shard `shard` reads this epoch, in order."""
        ordered = epoch_order(self.units, self.seed, self.epoch, self.shuffle)
        return blocks(shard_units(ordered, shard, n_shards), self.shuffle_buffer)

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        shard = self.rank * n_workers + worker
        yield from self.iter_shard(shard, self.world_size * n_workers)

    def iter_shard(self, shard: int, n_shards: int) -> Iterator[Batch]:
        """Batches of one shard from its resume position to the end of the epoch."""
        grouped = self.shard_blocks(shard, n_shards)
        start_block, start_row = self.resume.get(shard, (0, 0))
        carry: pa.Table | None = None
        for index in range(start_block, len(grouped)):
            block = self._block_table(grouped[index], shard, index)
            first = start_row if index == start_block else 0
            block_rows = block.num_rows
            rows = block.slice(first)
            if carry is not None and carry.num_rows:
                rows = pa.concat_tables([carry, rows], promote_options="permissive")
            carried = 0 if carry is None else carry.num_rows
            offset = 0
            while rows.num_rows - offset >= self.batch_size:
                end = offset + self.batch_size
                next_row = first + end - carried
                position = (index, next_row) if next_row < block_rows else (index + 1, 0)
                yield self._batch(rows.slice(offset, self.batch_size), shard, position)
                offset = end
            carry = rows.slice(offset)
        if carry is not None and carry.num_rows:
            yield self._batch(carry, shard, (len(grouped), 0))

    def _batch(self, table: pa.Table, shard: int, position: tuple[int, int]) -> Batch:
        batch = to_batch(table, self.layout, self.extras)
        batch.position = (self.epoch, shard, *position)
        return batch
