"""Work units (one Parquet row group of one snapshot file), their per-epoch shuffle and sharding.

Every process plans the same units in the same order, permutes them with the same
`(seed, epoch)` and takes every `n_shards`-th one: the shards of an epoch are disjoint and
together cover every unit, so every row is read exactly once per epoch across all ranks and
DataLoader workers. A shard's units are grouped into blocks of about `shuffle_buffer` rows;
rows are shuffled inside a block, which is also the unit of resumption.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from freshlake.training.snapshot import Snapshot


@dataclass(frozen=True)
class WorkUnit:
    uri: str
    row_group: int
    num_rows: int


def open_file(uri: str) -> pq.ParquetFile:
    """A Parquet file by URI or local path, through the Arrow filesystem layer."""
    if "://" in uri:
        fs, path = pafs.FileSystem.from_uri(uri)
    else:
        fs, path = pafs.LocalFileSystem(), uri
    return pq.ParquetFile(fs.open_input_file(path))


def read_unit(
    unit: WorkUnit, columns: Sequence[str], file: pq.ParquetFile | None = None
) -> pa.Table:
    """The `columns` of one unit's row group, view types read as plain string / binary.

    `file`: the unit's file already open (its footer parsed once for all its row groups).

    Files rewritten by delta-rs (a MERGE that updates labels in place) carry string_view /
    binary_view in their Arrow schema; files written by Spark tasks do not, and one block or
    evaluation pass may hold both.
    """
    table = (file or open_file(unit.uri)).read_row_group(unit.row_group, columns=list(columns))
    return _plain(table)


def read_filtered(
    unit: WorkUnit,
    columns: Sequence[str],
    file: pq.ParquetFile,
    filters: Mapping[str, object],
) -> tuple[pa.Table, np.ndarray | None]:
    """The `columns` of one unit's row group and which of its rows equal every filter value
    (column -> value; a boolean mask, None when all do).

    The row group's statistics decide first: a row group they rule out is not read (no rows),
    and one whose filter columns hold nothing but the filter values is read without them.
    """
    if not filters:
        return read_unit(unit, columns, file), None
    match = statistics_match(file.metadata.row_group(unit.row_group), filters)
    if match == "none":
        schema = file.schema_arrow
        return _plain(pa.schema([schema.field(c) for c in columns]).empty_table()), None
    if match == "all":
        return read_unit(unit, columns, file), None
    table = read_unit(unit, list(dict.fromkeys([*columns, *filters])), file)
    keep = matching_rows(table, filters)
    return table.select(list(columns)), None if keep.all() else keep


def matching_rows(table: pa.Table, filters: Mapping[str, object]) -> np.ndarray:
    """A boolean mask of the rows equal to every filter value (a null equals nothing)."""
    tests = [pc.equal(table.column(c), value) for c, value in filters.items()]
    keep = pc.fill_null(reduce(pc.and_, tests), False) if tests else None
    if keep is None:
        return np.ones(table.num_rows, dtype=bool)
    return keep.to_numpy(zero_copy_only=False)


def statistics_match(
    row_group: pq.RowGroupMetaData, filters: Mapping[str, object]
) -> Literal["none", "all", "some"]:
    """What a row group's min / max statistics say of its rows against `filters` (column ->
    value): "none" can equal every value, "all" do (each filter column holds only its value and
    no null), or "some" (the statistics cannot tell, or say nothing)."""
    columns = {row_group.column(i).path_in_schema: i for i in range(row_group.num_columns)}
    every = True
    for name, value in filters.items():
        stats = row_group.column(columns[name]).statistics if name in columns else None
        if stats is None or not stats.has_min_max:
            every = False
            continue
        try:
            if value < stats.min or value > stats.max:
                return "none"
            only = stats.min == value == stats.max
        except TypeError:  # a value of another type than the statistics: they say nothing
            every = False
            continue
        every = every and only and stats.has_null_count and stats.null_count == 0
    return "all" if every else "some"


def _plain(table: pa.Table) -> pa.Table:
    if all(_plain_type(t) is t for t in table.schema.types):
        return table
    fields = [pa.field(f.name, _plain_type(f.type), f.nullable) for f in table.schema]
    schema = pa.schema(fields)
    return table if schema.equals(table.schema) else table.cast(schema)


def _plain_type(data_type: pa.DataType) -> pa.DataType:
    # pyarrow < 16 (the Petastorm environment) has no view types, hence getattr.
    if getattr(pa.types, "is_string_view", lambda _: False)(data_type):
        return pa.string()
    if getattr(pa.types, "is_binary_view", lambda _: False)(data_type):
        return pa.binary()
    return data_type


def plan_units(snapshot: Snapshot) -> list[WorkUnit]:
    """One unit per row group of every file of the snapshot (reads the Parquet footers)."""
    units = []
    for data_file in snapshot.files:
        metadata = open_file(data_file.uri).metadata
        for i in range(metadata.num_row_groups):
            units.append(WorkUnit(data_file.uri, i, metadata.row_group(i).num_rows))
    return units


def epoch_order(units: Sequence[WorkUnit], seed: int, epoch: int, shuffle: bool) -> list[WorkUnit]:
    """The units in this epoch's order, identical in every process."""
    if not shuffle:
        return list(units)
    order = np.random.default_rng([seed, epoch]).permutation(len(units))
    return [units[i] for i in order]


def shard_units(units: Sequence[WorkUnit], shard: int, n_shards: int) -> list[WorkUnit]:
    """Round-robin share of shard `shard` out of `n_shards`."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} is not in [0, {n_shards})")
    return list(units[shard::n_shards])


def blocks(units: Sequence[WorkUnit], block_rows: int) -> list[list[WorkUnit]]:
    """Consecutive units grouped until a group holds at least `block_rows` rows."""
    grouped: list[list[WorkUnit]] = []
    current: list[WorkUnit] = []
    rows = 0
    for unit in units:
        current.append(unit)
        rows += unit.num_rows
        if rows >= block_rows:
            grouped.append(current)
            current, rows = [], 0
    if current:
        grouped.append(current)
    return grouped
