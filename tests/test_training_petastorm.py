"""The Petastorm loader, in its own environment (`make test-petastorm`; skipped elsewhere).

It must deliver the same rows as the default loader, every train row exactly once per epoch
across ranks, as the same tensors; and `training.loader=petastorm` must train a model.
"""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

pytest.importorskip("petastorm")
# Petastorm 0.13.1 calls pyarrow APIs deprecated since pyarrow 5.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

from freshlake.training.batch import FeatureLayout  # noqa: E402
from freshlake.training.dataset import DeltaExamples  # noqa: E402
from freshlake.training.petastorm_loader import petastorm_batches  # noqa: E402
from freshlake.training.snapshot import open_snapshot  # noqa: E402
from freshlake.training.synthetic import (  # noqa: E402
    SYNTHETIC_SPEC,
    synthetic_examples,
    write_synthetic_table,
)
from freshlake.training.units import plan_units  # noqa: E402


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    root = tmp_path_factory.mktemp("petastorm")
    table = synthetic_examples(30_000, seed=5)
    write_synthetic_table(str(root / "lake" / "examples"), table, rows_per_group=400)
    train = table.filter(pc.equal(table.column("split"), "train"))
    return root, sorted(train.column("row_id").to_pylist())


def ids(batches) -> list[int]:
    return [int(i) for b in batches for i in b.extras["row_id"].tolist()]


def test_each_train_row_once_per_epoch_across_two_ranks(examples):
    root, train_ids = examples
    snapshot = open_snapshot(str(root / "lake" / "examples"))
    layout = FeatureLayout.from_spec(SYNTHETIC_SPEC, snapshot.columns)
    files = [f.uri for f in snapshot.files]
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            batches = list(
                petastorm_batches(
                    files,
                    layout,
                    batch_size=128,
                    rank=rank,
                    world_size=2,
                    seed=3,
                    epoch=epoch,
                    filters={"split": "train"},
                    extras=("row_id",),
                )
            )
            assert all(len(b) == 128 for b in batches[:-1])
            seen += ids(batches)
        assert sorted(seen) == train_ids


def test_same_tensors_as_the_default_loader(examples):
    root, _ = examples
    snapshot = open_snapshot(str(root / "lake" / "examples"))
    layout = FeatureLayout.from_spec(SYNTHETIC_SPEC, snapshot.columns)
    kwargs = {"batch_size": 10_000, "filters": {"split": "eval"}, "extras": ("row_id",)}
    ours = list(
        DeltaExamples(plan_units(snapshot), layout, shuffle=False, **kwargs).iter_shard(0, 1)
    )
    theirs = list(
        petastorm_batches([f.uri for f in snapshot.files], layout, shuffle=False, **kwargs)
    )
    assert ids(ours) and sorted(ids(ours)) == sorted(ids(theirs))

    def by_row(batches):
        rows = {}
        for b in batches:
            offsets = [*b.text_offsets[0].tolist(), len(b.text_ids[0])]
            for i, row_id in enumerate(b.extras["row_id"].tolist()):
                bag = b.text_ids[0][offsets[i] : offsets[i + 1]].tolist()
                rows[int(row_id)] = (
                    b.categorical[i].tolist(),
                    b.numeric[i].tolist(),
                    bag,
                    float(b.label[i]),
                    float(b.weight[i]),
                )
        return rows

    assert by_row(ours) == by_row(theirs)
    assert ours[0].categorical.dtype == theirs[0].categorical.dtype
    assert ours[0].numeric.dtype == theirs[0].numeric.dtype


def test_training_with_the_petastorm_loader(examples, monkeypatch):
    from freshlake.config import load_config
    from freshlake.training.launch import make_job
    from freshlake.training.trainer import train

    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    root, train_ids = examples
    config = load_config(None, {"lake.root": str(root / "lake")})
    config = config.model_copy(
        update={
            "features": config.features.model_copy(update={"spec": SYNTHETIC_SPEC}),
            "training": config.training.model_copy(
                update={"loader": "petastorm", "epochs": 2, "batch_size": 256, "num_workers": 2}
            ),
        }
    )
    card = train(make_job(config, root / "model"))
    assert card["training"]["loader"] == "petastorm"
    assert card["data"]["rows_per_epoch"] == [len(train_ids)] * 2
    metrics = card["metrics"]["eval"]
    assert metrics["model"]["auc"] > metrics["popularity_baseline"]["auc"]
