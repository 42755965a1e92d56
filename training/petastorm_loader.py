"""The optional Petastorm loader (`--loader petastorm`): the same batches as the default loader,
read through Petastorm's `make_batch_reader` over the snapshot's file list.

Petastorm 0.13.1 needs pyarrow < 15 and numpy < 2, so it runs in its own environment
(`pip install -r training/petastorm/requirements.txt`, `make test-petastorm`); it is imported
only when this loader is used. Rows are sharded by row group with `cur_shard`/`shard_count`
(one shard per DDP rank); a resumed epoch starts again from its first row.

Petastorm's reader runs with its synchronous ("dummy") pool: with the "thread" pool, 0.13.1 on
pyarrow 14 skipped whole row groups (sometimes a whole shard) in about one read in six here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshlake.training.batch import Batch, FeatureLayout, to_batch


def _text_as_bytes(text_columns: Sequence[str]):
    """A TransformSpec that packs each row's id list into int64 bytes: Petastorm's batch reader
    only collates lists of equal length, and n-gram bags are not."""
    from petastorm.transform import TransformSpec

    def pack(ids) -> bytes:
        return b"" if ids is None else np.asarray(ids, dtype=np.int64).tobytes()

    def encode(frame):
        for name in text_columns:
            frame[name] = frame[name].map(pack)
        return frame

    return TransformSpec(encode, edit_fields=[(n, np.bytes_, (), False) for n in text_columns])


def _unpack(values) -> pa.Array:
    lengths = np.fromiter((len(v) // 8 for v in values), dtype=np.int32, count=len(values))
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.frombuffer(b"".join(values), dtype=np.int64)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids))


def _chunk_table(chunk, columns: Sequence[str], text_columns: Sequence[str]) -> pa.Table:
    arrays = {}
    for name in columns:
        values = getattr(chunk, name)
        arrays[name] = _unpack(values) if name in text_columns else pa.array(values)
    return pa.table(arrays)


def petastorm_batches(
    file_uris: Sequence[str],
    layout: FeatureLayout,
    *,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    filters: Mapping[str, object] | None = None,
    extras: Sequence[str] = (),
) -> Iterator[Batch]:
    """One epoch of this rank's batches (rows shuffled within each row group when `shuffle`)."""
    from petastorm import make_batch_reader

    filters = dict(filters or {})
    columns = list(dict.fromkeys([*layout.columns(), *extras, *filters]))
    carry: pa.Table | None = None
    rng = np.random.default_rng([seed, epoch, rank])
    with make_batch_reader(
        list(file_uris),
        schema_fields=columns,
        cur_shard=rank,
        shard_count=world_size,
        shuffle_row_groups=shuffle,
        seed=seed * 1_000_003 + epoch,
        num_epochs=1,
        transform_spec=_text_as_bytes(layout.text) if layout.text else None,
        reader_pool_type="dummy",
    ) as reader:
        for chunk in reader:
            table = _chunk_table(chunk, columns, layout.text)
            for column, value in filters.items():
                table = table.filter(pc.equal(table.column(column), value))
            if shuffle and table.num_rows > 1:
                table = table.take(pa.array(rng.permutation(table.num_rows)))
            if carry is not None and carry.num_rows:
                table = pa.concat_tables([carry, table])
            offset = 0
            while table.num_rows - offset >= batch_size:
                yield to_batch(table.slice(offset, batch_size), layout, extras)
                offset += batch_size
            carry = table.slice(offset)
    if carry is not None and carry.num_rows:
        yield to_batch(carry, layout, extras)
