"""Warm start: continual training on the rows a table gained since the previous model's version."""

from __future__ import annotations

from datetime import date

import pyarrow.compute as pc
import torch

from freshlake.config import load_config
from freshlake.training.artifact import load_model, read_card
from freshlake.training.launch import make_job
from freshlake.training.synthetic import SYNTHETIC_SPEC, synthetic_examples, write_synthetic_table
from freshlake.training.trainer import train


def config_for(root, **training):
    config = load_config(None, {"lake.root": str(root)})
    defaults = {"epochs": 1, "batch_size": 256, "num_workers": 0, "checkpoint_every": 10}
    return config.model_copy(
        update={
            "features": config.features.model_copy(update={"spec": SYNTHETIC_SPEC}),
            "training": config.training.model_copy(update={**defaults, **training}),
        }
    )


def train_rows(table) -> int:
    return table.filter(pc.equal(table.column("split"), "train")).num_rows


def test_warm_start_reads_only_files_added_since_the_previous_version(tmp_path, monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    uri = str(tmp_path / "lake" / "fresh_examples")
    first = synthetic_examples(30_000, seed=1)
    write_synthetic_table(uri, first)
    # Every row counts here: no delayed-feedback handling (its own tests are below).
    config = config_for(tmp_path / "lake", table="fresh_examples", delayed_feedback="none")
    first_card = train(make_job(config, tmp_path / "v0"))
    assert first_card["data"]["rows_per_epoch"] == [train_rows(first)]

    fresh = synthetic_examples(20_000, seed=2, days=2, eval_days=1, start=date(2026, 1, 5))
    assert write_synthetic_table(uri, fresh) == 1
    job = make_job(config, tmp_path / "v1", warm_start=str(tmp_path / "v0"))
    assert job.since_version == 0 and job.version == 1
    card = train(job)

    assert card["data"]["since_version"] == 0 and card["data"]["version"] == 1
    assert card["data"]["rows_per_epoch"] == [train_rows(fresh)]
    assert card["training"]["warm_start"] == str((tmp_path / "v0").resolve())
    assert read_card(tmp_path / "v1")["model"] == first_card["model"]
    before, after = load_model(tmp_path / "v0"), load_model(tmp_path / "v1")
    moved = [
        not torch.equal(a, b)
        for a, b in zip(before.state_dict().values(), after.state_dict().values(), strict=True)
    ]
    assert any(moved)


def test_same_seed_same_model_and_compare_models_reports_pd(tmp_path, monkeypatch):
    from freshlake.training.scoring import compare_saved_models

    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    write_synthetic_table(str(tmp_path / "lake" / "examples"), synthetic_examples(15_000, seed=3))
    for seed, out in ((1, "a"), (1, "b"), (2, "c")):
        config = config_for(tmp_path / "lake", seed=seed, num_workers=2)
        train(make_job(config, tmp_path / out))
    same = compare_saved_models(config, tmp_path / "a", tmp_path / "b")
    other = compare_saved_models(config, tmp_path / "a", tmp_path / "c")
    assert same["prediction_difference"]["pd_relative"] == 0.0
    assert other["prediction_difference"]["pd_relative"] > 0.01
    assert same["model_a"]["rows"] == other["model_b"]["rows"] > 0


def test_warm_start_continues_the_optimizer_state(tmp_path, monkeypatch):
    """Adagrad's squared-gradient sums carry over, so a few fresh rows take small steps."""
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    uri = str(tmp_path / "lake" / "fresh_examples")
    write_synthetic_table(uri, synthetic_examples(20_000, seed=3))
    config = config_for(tmp_path / "lake", table="fresh_examples", delayed_feedback="none")
    train(make_job(config, tmp_path / "v0"))
    fresh = synthetic_examples(2_000, seed=4, days=2, eval_days=1, start=date(2026, 1, 5))
    write_synthetic_table(uri, fresh)
    faster = config.model_copy(
        update={"training": config.training.model_copy(update={"learning_rate": 0.05})}
    )
    train(make_job(faster, tmp_path / "v1", warm_start=str(tmp_path / "v0")))

    before = torch.load(tmp_path / "v0" / "checkpoint.pt", weights_only=False)["optimizer"]
    after = torch.load(tmp_path / "v1" / "checkpoint.pt", weights_only=False)["optimizer"]
    assert after["param_groups"][0]["lr"] == 0.05  # this run's learning rate, not the saved one
    for index, state in before["state"].items():
        # The sums only grow: the warm start's are inside the new ones.
        assert torch.all(after["state"][index]["sum"] >= state["sum"])
    assert any(
        torch.any(after["state"][i]["sum"] > before["state"][i]["sum"]) for i in before["state"]
    )
