"""The default training loader: Delta snapshots, exactly-once sharding, seeded shuffle, resume."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from deltalake import DeltaTable
from torch.utils.data import DataLoader

from freshlake.lake import read_table_arrow
from freshlake.training.batch import FeatureLayout
from freshlake.training.dataset import DeltaExamples, batch_pieces, shuffle_mode
from freshlake.training.snapshot import added_since, open_snapshot
from freshlake.training.synthetic import SYNTHETIC_SPEC, synthetic_examples, write_synthetic_table
from freshlake.training.units import plan_units, statistics_match


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """A 4-day synthetic examples table with many small row groups; its train row ids."""
    uri = str(tmp_path_factory.mktemp("lake") / "examples")
    table = synthetic_examples(40_000, seed=3)
    write_synthetic_table(uri, table, rows_per_group=300)
    train = table.filter(pc.equal(table.column("split"), "train"))
    return uri, sorted(train.column("row_id").to_pylist())


def make_dataset(uri, **kwargs) -> DeltaExamples:
    snapshot = open_snapshot(uri)
    layout = FeatureLayout.from_spec(SYNTHETIC_SPEC, snapshot.columns)
    options = {"batch_size": 128, "filters": {"split": "train"}, "extras": ("row_id",)}
    options.update(kwargs)
    return DeltaExamples(plan_units(snapshot), layout, **options)


def ids_of(batches) -> list[int]:
    return [int(i) for b in batches for i in b.extras["row_id"].tolist()]


def test_snapshot_reads_files_from_the_log_not_the_folder(tmp_path):
    uri = str(tmp_path / "t")
    first = synthetic_examples(3000, seed=1)
    write_synthetic_table(uri, first)
    second = synthetic_examples(3000, seed=2)
    write_synthetic_table(uri, second, mode="overwrite")  # old files stay on disk until vacuum

    latest, pinned = open_snapshot(uri), open_snapshot(uri, version=0)
    on_disk = {p.name for p in (tmp_path / "t").rglob("*.parquet")}
    assert len(on_disk) == len(latest.files) + len(pinned.files)
    assert latest.version == 1 and latest.num_rows == second.num_rows
    assert pinned.num_rows == first.num_rows
    assert not {f.uri for f in latest.files} & {f.uri for f in pinned.files}
    dataset = make_dataset(uri)
    train = second.filter(pc.equal(second.column("split"), "train"))
    assert sorted(ids_of(dataset.iter_shard(0, 1))) == sorted(train.column("row_id").to_pylist())


def test_date_range_and_files_added_since_a_version(tmp_path):
    uri = str(tmp_path / "t")
    write_synthetic_table(uri, synthetic_examples(4000, seed=1, days=4))
    fresh = synthetic_examples(2000, seed=9, days=1, start=date(2026, 1, 5))
    write_synthetic_table(uri, fresh)
    snapshot = open_snapshot(uri)

    two_days = snapshot.between_dates(date(2026, 1, 2), date(2026, 1, 4))
    assert {f.partition_values["dt"] for f in two_days.files} == {
        date(2026, 1, 2),
        date(2026, 1, 3),
    }
    new = added_since(snapshot, 0)
    assert new.num_rows == fresh.num_rows
    assert {f.partition_values["dt"] for f in new.files} == {date(2026, 1, 5)}
    with pytest.raises(ValueError, match="after snapshot"):
        added_since(snapshot, 5)


@pytest.mark.parametrize("shuffle", ["rows", "blocks"])
@pytest.mark.parametrize("workers", ["threads", "DataLoader processes"])
def test_every_train_row_exactly_once_across_2_ranks_x_2_workers(examples, workers, shuffle):
    uri, train_ids = examples
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            dataset = make_dataset(uri, rank=rank, world_size=2, seed=11, shuffle=shuffle)
            dataset.set_epoch(epoch)
            if workers == "threads":
                batches = list(dataset.batches(2))
            else:
                batches = list(DataLoader(dataset, batch_size=None, num_workers=2))
            assert {b.position[1] for b in batches} == {rank * 2, rank * 2 + 1}  # its 2 shards
            seen += ids_of(batches)
        assert sorted(seen) == train_ids, f"epoch {epoch}: rows missing or repeated"


@pytest.mark.parametrize("shuffle", ["rows", "blocks"])
def test_shuffle_is_determined_by_seed_and_epoch(examples, shuffle):
    uri, train_ids = examples

    def order(seed: int, epoch: int) -> list[int]:
        dataset = make_dataset(uri, seed=seed, shuffle=shuffle)
        dataset.set_epoch(epoch)
        return ids_of(dataset.iter_shard(0, 1))

    first = order(seed=5, epoch=0)
    assert first == order(seed=5, epoch=0)
    assert first != order(seed=6, epoch=0)
    assert first != order(seed=5, epoch=1)
    assert sorted(first) == sorted(order(seed=5, epoch=1)) == train_ids
    unshuffled = ids_of(make_dataset(uri, shuffle=False).iter_shard(0, 1))
    assert first != unshuffled and sorted(unshuffled) == train_ids


@pytest.mark.parametrize("shuffle", ["rows", "blocks"])
@pytest.mark.parametrize("stop_after", [1, 7, 20])
def test_resume_from_a_position_continues_the_same_sequence(examples, stop_after, shuffle):
    uri, _ = examples
    options = {"seed": 2, "world_size": 2, "rank": 1, "shuffle_buffer": 1000, "batch_size": 32}
    dataset = make_dataset(uri, shuffle=shuffle, **options)
    dataset.set_epoch(3)
    full = list(dataset.iter_shard(3, 4))
    assert len(full) > stop_after
    _, shard, block, row = full[stop_after - 1].position
    resumed = make_dataset(uri, shuffle=shuffle, **options)
    resumed.set_epoch(3, resume={shard: (block, row)})
    rest = list(resumed.iter_shard(3, 4))
    assert ids_of(rest) == ids_of(full[stop_after:])
    assert rest[-1].position == full[-1].position


def test_block_pieces_cover_every_row_once_from_a_random_first_cut():
    size, rows = 100, 1050
    firsts = Counter()
    for seed in range(400):
        pieces = batch_pieces(rows, size, np.random.default_rng(seed)).runs
        assert sorted(i for a, b in pieces for i in range(a, b)) == list(range(rows))
        lengths = sorted(b - a for a, b in pieces)
        assert lengths[2:] == [size] * (len(pieces) - 2)  # only the two ends are shorter
        firsts[min(b for a, b in pieces if a == 0) % size] += 1
    # the first cut is uniform on 0..size-1: every tenth of the range is drawn
    assert len({cut // 10 for cut in firsts}) == 10
    assert batch_pieces(1, size, np.random.default_rng(0)).runs == ((0, 1),)


def test_blocks_shuffle_delivers_runs_of_stored_rows_in_another_order_each_epoch(tmp_path):
    table = synthetic_examples(3000, seed=6, negative_rate=1.0)
    uri = str(tmp_path / "t")
    write_synthetic_table(uri, table, rows_per_group=5000)  # one row group per dt file
    stored = {}
    for data_file in open_snapshot(uri).files:
        ids = pq.read_table(data_file.uri, columns=["row_id"]).column(0).to_pylist()
        stored.update({rid: (data_file.uri, i) for i, rid in enumerate(ids)})
    orders = []
    for epoch in (0, 1):
        dataset = make_dataset(uri, shuffle="blocks", filters=None, batch_size=50)
        dataset.set_epoch(epoch)
        ids = ids_of(dataset.iter_shard(0, 1))
        assert sorted(ids) == sorted(stored)
        # consecutive delivered rows are consecutive stored rows, except at piece boundaries
        places = [stored[rid] for rid in ids]
        breaks = sum(b != (a[0], a[1] + 1) for a, b in itertools.pairwise(places))
        assert breaks <= 2 * len(ids) / 50 + 8
        orders.append(ids)
    assert orders[0] != orders[1]


def test_row_group_statistics_decide_which_row_groups_need_the_filter(examples):
    """The train split filter: eval row groups are not read, train row groups are read
    without the split column; statistics that cannot tell leave it to the rows."""
    uri, _ = examples
    matches = Counter()
    for data_file in open_snapshot(uri).files:
        metadata = pq.ParquetFile(data_file.uri).metadata
        train = data_file.partition_values["dt"] < date(2026, 1, 4)  # the last of 4 days: eval
        for i in range(metadata.num_row_groups):
            match = statistics_match(metadata.row_group(i), {"split": "train"})
            assert match == ("all" if train else "none")
            matches[match] += 1
            for unknown in ({"split": 7}, {"absent": 1}, {"split": "train", "f_device": 1}):
                assert statistics_match(metadata.row_group(i), unknown) != "none" or not train
    assert matches["all"] and matches["none"]


def test_rows_of_row_groups_holding_both_splits_are_filtered(tmp_path):
    table = synthetic_examples(4000, seed=8)
    split = np.where(np.arange(table.num_rows) % 3 == 0, "eval", "train")
    table = table.set_column(table.schema.get_field_index("split"), "split", pa.array(split))
    uri = str(tmp_path / "t")
    write_synthetic_table(uri, table, rows_per_group=500)
    train = sorted(table.filter(pc.equal(table.column("split"), "train"))["row_id"].to_pylist())
    for shuffle in ("none", "rows", "blocks"):
        assert sorted(ids_of(make_dataset(uri, shuffle=shuffle).batches(0))) == train


def test_auto_shuffle_is_blocks_only_on_the_builders_table():
    """The builder writes `examples` in hash order; the joiner writes in arrival order."""
    assert shuffle_mode("auto", "examples") == "blocks"
    assert shuffle_mode("auto", "fresh_examples") == "rows"
    assert shuffle_mode("rows", "examples") == "rows"
    assert shuffle_mode("blocks", "fresh_examples") == "blocks"


def test_an_unknown_shuffle_mode_is_rejected(examples):
    uri, _ = examples
    with pytest.raises(ValueError, match="shuffle"):
        make_dataset(uri, shuffle="global")


@pytest.mark.parametrize("shuffle", ["rows", "blocks"])
@pytest.mark.parametrize("workers", [0, 2])
def test_batches_kept_by_the_consumer_keep_their_rows(examples, workers, shuffle):
    """Block memory is reused once no batch views it: batches kept while later blocks are
    decoded still hold their own rows."""
    uri, train_ids = examples
    stored = read_table_arrow(uri).select(["row_id", "f_user_id", "f_query"]).to_pylist()
    users = {r["row_id"]: r["f_user_id"] for r in stored}
    bags = {r["row_id"]: r["f_query"] for r in stored}
    dataset = make_dataset(uri, shuffle=shuffle, shuffle_buffer=700, batch_size=64)
    kept = list(dataset.batches(workers))
    assert sorted(ids_of(kept)) == train_ids
    for batch in kept:
        rows = batch.extras["row_id"].long().tolist()
        assert batch.categorical[:, 0].tolist() == [users[r] for r in rows]
        ids, starts = batch.text_ids[0].tolist(), [*batch.text_offsets[0].tolist(), None]
        assert [ids[a:b] for a, b in itertools.pairwise(starts)] == [bags[r] for r in rows]


def test_batches_hold_the_feature_spec_as_tensors(examples):
    uri, _ = examples
    snapshot = open_snapshot(uri)
    batch = next(make_dataset(uri, batch_size=64).iter_shard(0, 1))
    assert len(batch) == 64
    assert batch.categorical.dtype == torch.int64 and batch.categorical.shape == (64, 3)
    assert batch.numeric.dtype == torch.float32 and batch.numeric.shape == (64, 4)
    ids, offsets = batch.text_ids[0], batch.text_offsets[0]
    assert offsets.shape == (64,) and offsets[0] == 0 and bool((offsets.diff() >= 0).all())
    assert int(ids.max()) < 2003 and int(batch.categorical[:, 1].max()) < 1009
    assert set(batch.label.unique().tolist()) <= {0.0, 1.0}
    # weights are 1 / sample_prob: 1 for clicks, 10 for kept negatives
    assert bool(((batch.weight == 1) == (batch.label == 1)).all())
    # The text bag of the first row matches the stored array.
    first_id = int(batch.extras["row_id"][0])
    stored = read_table_arrow(uri).filter(pc.field("row_id") == first_id)
    assert stored.column("f_query").to_pylist()[0] == ids[: int(offsets[1])].tolist()
    assert snapshot.columns and "f_query" in snapshot.columns


def test_a_table_without_the_spec_columns_is_rejected(tmp_path):
    uri = str(tmp_path / "t")
    write_synthetic_table(uri, synthetic_examples(1000, seed=1).drop_columns(["f_device"]))
    with pytest.raises(ValueError, match="f_device"):
        FeatureLayout.from_spec(SYNTHETIC_SPEC, open_snapshot(uri).columns)


def test_shards_are_balanced_by_row_groups(examples):
    uri, train_ids = examples
    counts = Counter()
    dataset = make_dataset(uri, world_size=2, rank=0)
    for shard in range(4):
        counts[shard] = len(ids_of(dataset.iter_shard(shard, 4)))
    assert sum(counts.values()) == len(train_ids)
    assert max(counts.values()) < 2 * np.mean(list(counts.values()))


def test_files_rewritten_by_a_delta_rs_merge_read_with_the_others(tmp_path):
    """A MERGE (labels updated in place by the joiner) rewrites files with Arrow view types."""
    import pyarrow as pa

    uri = str(tmp_path / "t")
    table = synthetic_examples(3000, seed=4)
    write_synthetic_table(uri, table, rows_per_group=300)
    ids = table.column("row_id").to_pylist()[:50]
    source = pa.table({"row_id": pa.array(ids, table.schema.field("row_id").type)})
    (
        DeltaTable(uri)
        .merge(source, "t.row_id = s.row_id", source_alias="s", target_alias="t")
        .when_matched_update({"label": "1"})
        .execute()
    )
    train = table.filter(pc.equal(table.column("split"), "train"))
    dataset = make_dataset(uri, batch_size=1000, shuffle=False)
    assert sorted(ids_of(dataset.iter_shard(0, 1))) == sorted(train.column("row_id").to_pylist())


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_workers_hand_over_their_shards_batches_in_turn(examples, threads):
    """The same batches whether each shard has a decoding thread of its own, one thread decodes
    both, or the consuming thread does."""
    uri, _ = examples
    dataset = make_dataset(uri, rank=1, world_size=2, seed=4, batch_size=100)
    dataset.set_epoch(1, resume={3: (1, 57)})
    threaded = list(dataset.batches(2, threads=threads))
    shards = [list(dataset.iter_shard(shard, 4)) for shard in (2, 3)]
    expected = [b for pair in zip(*shards, strict=False) for b in pair]
    longer = max(shards, key=len)
    expected += longer[len(min(shards, key=len)) :]
    assert [b.position for b in threaded] == [b.position for b in expected]
    assert ids_of(threaded) == ids_of(expected)


@pytest.mark.parametrize("shuffle", ["rows", "blocks"])
def test_batches_hold_the_stored_rows_nulls_as_documented(tmp_path, shuffle):
    """Every row of every batch against its stored row: null id 0, value 0, bag [], weight 1."""
    import pyarrow as pa

    table = synthetic_examples(4000, seed=5)
    row_id = table.column("row_id")
    columns = {name: table.column(name) for name in table.column_names}
    for name, every in [("f_position", 2), ("f_query", 4), ("weight", 8), ("f_device", 16)]:
        keep = pc.not_equal(pc.bit_wise_and(row_id, every - 1), 0)
        columns[name] = pc.if_else(keep, columns[name], pa.nulls(len(row_id), columns[name].type))
    table = pa.table(columns)
    uri = str(tmp_path / "t")
    write_synthetic_table(uri, table, rows_per_group=700)
    stored = {r["row_id"]: r for r in table.to_pylist()}

    dataset = make_dataset(uri, shuffle=shuffle, batch_size=333, shuffle_buffer=1500)
    batches = list(dataset.batches(1))
    assert sum(len(b) for b in batches) == sum(r["split"] == "train" for r in stored.values())
    for batch in batches:
        offsets = [*batch.text_offsets[0].tolist(), len(batch.text_ids[0])]
        for i, rid in enumerate(batch.extras["row_id"].long().tolist()):
            row = stored[rid]
            assert batch.categorical[i].tolist() == [
                row["f_user_id"],
                row["f_item_id"],
                row["f_device"] or 0,
            ]
            assert batch.numeric[i].tolist() == pytest.approx(
                [row["f_position"] or 0, 0, row["f_hour"], 0]
            )
            bag = batch.text_ids[0][offsets[i] : offsets[i + 1]].tolist()
            assert bag == (row["f_query"] or [])
            assert batch.label[i] == row["label"]
            assert batch.weight[i] == pytest.approx(1 if row["weight"] is None else row["weight"])


@pytest.mark.parametrize("shuffle", ["rows", "blocks"])
def test_fewer_threads_than_workers_deliver_the_same_batches(examples, shuffle):
    uri, train_ids = examples
    dataset = make_dataset(uri, seed=9, batch_size=96, shuffle=shuffle, shuffle_buffer=900)
    by_threads = {threads: list(dataset.batches(3, threads=threads)) for threads in (0, 1, 2, 3)}
    assert sorted(ids_of(by_threads[3])) == train_ids
    for threads in (0, 1, 2):
        assert [b.position for b in by_threads[threads]] == [b.position for b in by_threads[3]]
        assert ids_of(by_threads[threads]) == ids_of(by_threads[3])


@pytest.mark.parametrize(
    ("cores", "local_processes", "workers", "threads"),
    [(2, 1, 2, 0), (1, 1, 2, 0), (3, 1, 2, 1), (16, 1, 2, 2), (16, 1, 32, 14), (8, 2, 4, 2)],
)
def test_loader_threads_leave_cores_to_the_consumer_and_the_reads(
    monkeypatch, cores, local_processes, workers, threads
):
    from freshlake.training import dataset as module

    monkeypatch.setattr(module.os, "sched_getaffinity", lambda _: set(range(cores)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_processes))
    assert module.loader_threads(workers) == threads


def loader_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith("loader-")]


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_a_consumer_that_stops_early_stops_the_loader_threads(examples, threads):

    uri, _ = examples
    batches = make_dataset(uri).batches(2, threads=threads)
    next(batches)
    batches.close()
    assert not loader_threads()  # close waits for the read or decode each thread was in


_EXIT_WHILE_PRODUCING = """
import sys, time
from freshlake.training.background import background

def slow():
    try:
        yield 1
        time.sleep(0.5)  # the producer is busy when the interpreter exits
        yield 2
    finally:
        print("producer closed", flush=True)

items = background(background(slow(), 1, "loader-inner"), 1, "loader-outer")
print(next(items), flush=True)
sys.exit(0)  # `items` still open and referenced
"""


def test_interpreter_exit_waits_for_the_producers_instead_of_killing_them():
    """A daemon thread still inside a pyarrow read when Python finalizes aborts the process;
    at exit the producers are stopped and waited for, however deeply nested."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _EXIT_WHILE_PRODUCING], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["1", "producer closed"]


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_a_read_error_reaches_the_consumer(examples, tmp_path, threads):
    from freshlake.training.units import WorkUnit

    uri, _ = examples
    dataset = make_dataset(uri)
    dataset.units.append(WorkUnit(str(tmp_path / "gone.parquet"), 0, 10))
    with pytest.raises(FileNotFoundError):
        list(dataset.batches(2, threads=threads))


def test_text_bags_of_sliced_and_chunked_lists_and_null_lists_that_span_values():
    """Bags come from the list offsets as stored: a sliced array, several chunks, a null list
    whose offsets still span values (allowed by Arrow) and null ids inside a bag."""
    import pyarrow as pa

    from freshlake.training.batch import RowRuns, to_batch

    values = pa.array([1, 2, 3, 4, None, 6, 7, 8], pa.int64())
    offsets = pa.array([0, 2, 4, 5, 7, 8], pa.int32())
    lists = pa.ListArray.from_arrays(
        offsets, values, mask=pa.array([False, True, False, False, False])
    )
    expected = [[], [0], [6, 7], [8]]  # rows 1.. of the stored lists, as bags
    layout = FeatureLayout((), (), ("f_query",), weight=None)
    label = pa.array([0, 1, 0, 1], pa.int32())
    columns = [lists.slice(1), pa.chunked_array([lists.slice(1, 2), lists.slice(3, 2)])]
    orders = [
        None,
        np.array([3, 0, 2, 1]),
        np.array([2, 2, 0]),
        np.array([], np.int64),
        RowRuns(((2, 4), (0, 2))),
        RowRuns(((3, 4), (1, 2))),
        RowRuns(()),
    ]
    for column, order in itertools.product(columns, orders):
        table = pa.table({"f_query": column, "label": label})
        batch = to_batch(table, layout, order=order)
        rows = range(4) if order is None else order
        rows = rows.indices() if isinstance(rows, RowRuns) else rows
        ids, starts = batch.text_ids[0].tolist(), [*batch.text_offsets[0].tolist(), None]
        bags = [ids[a:b] for a, b in itertools.pairwise(starts)]
        assert bags == [expected[i] for i in rows]
        assert batch.label.tolist() == [float(i % 2) for i in rows]
        assert batch.weight.tolist() == [1.0] * len(rows)
