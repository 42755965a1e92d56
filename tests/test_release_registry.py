"""The MLflow registry (a real SQLite store): register, promote, roll back; refusals."""

from __future__ import annotations

import pytest

from freshlake.cli import main
from freshlake.lake import open_lake
from freshlake.release.events import read_events
from freshlake.release.qualify import qualify
from freshlake.release.registry import CHALLENGER, CHAMPION, Registry
from freshlake.release.signing import sign_model
from freshlake.report.release import release_section
from freshlake.training.artifact import MODEL_FILE, read_card
from tests.release_models import REPO, release_config, shifted_copy, train_model, write_examples


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    write_examples(root / "lake", "examples", 30_000, seed=2)
    return root, train_model(release_config(root / "lake"), root / "base")


def signed_copy(root, base, name: str, shift: float):
    """A qualified, signed variant of the base model (each with its own digest)."""
    config = release_config(root / "lake", calibration_band=(0.2, 5.0), max_ne=2.0)
    model = shifted_copy(base, root / name, shift)
    assert qualify(config, model)["qualified"]
    sign_model(model, config.release.signing_key_env)
    return model


def cli(root, model_name: str, *argv: str) -> int:
    return main(
        [
            *argv,
            "--config",
            str(REPO / "conf" / "local.yaml"),
            "--set",
            f"lake.root={root / 'lake'}",
            "--set",
            f"release.model_name={model_name}",
        ]
    )


def events_of(root, spark, model_name: str) -> list[dict]:
    """release_events rows of one registered model, in the lake the commands wrote to."""
    lake = open_lake(release_config(root / "lake"), spark)
    return [e for e in read_events(lake) if e["model_name"] == model_name]


def test_promote_and_rollback_move_the_aliases_and_record_why(trained, spark):
    root, base = trained
    first, second = signed_copy(root, base, "m1", 0.0), signed_copy(root, base, "m2", 0.1)
    config = release_config(root / "lake", model_name="ctr-aliases")
    registry = Registry(config)
    assert registry.tracking_uri == f"sqlite:///{root / 'mlflow.db'}"

    assert cli(root, "ctr-aliases", "register", str(first)) == 0
    assert registry.alias_version(CHALLENGER) == "1"
    version = registry.model_version("1")
    card = read_card(first)
    assert version.tags["lineage.table"] == "examples"
    assert version.tags["lineage.delta_version"] == str(card["data"]["version"])
    assert version.tags["lineage.feature_spec_hash"] == card["feature_spec_hash"]
    assert version.tags["lineage.code_version"] == card["code_version"]
    run = registry.client.get_run(version.run_id)
    assert run.data.params["data.table"] == "examples"
    assert 0.5 < run.data.metrics["qualification.auc"] < 1
    artifacts = {f.path for f in registry.client.list_artifacts(version.run_id, "model")}
    assert {"model/model.pt", "model/signature.json", "model/qualification.json"} <= artifacts

    assert cli(root, "ctr-aliases", "promote", "--reason", "first champion") == 0
    assert registry.alias_version(CHAMPION) == "1"
    assert registry.alias_version(CHALLENGER) is None
    # A folder that is not registered yet is registered, then promoted.
    assert cli(root, "ctr-aliases", "promote", str(second), "--reason", "better") == 0
    assert registry.alias_version(CHAMPION) == "2"
    assert registry.model_version("2").tags["previous_champion"] == "1"
    assert registry.model_version("2").tags["promoted_because"] == "better"

    assert cli(root, "ctr-aliases", "rollback", "--reason", "CTR dropped") == 0
    assert registry.alias_version(CHAMPION) == "1"
    assert registry.model_version("2").tags["rolled_back_because"] == "CTR dropped"
    # Version 1 replaced no champion: nothing further to roll back to.
    assert cli(root, "ctr-aliases", "rollback", "--reason", "again") == 1

    events = events_of(root, spark, "ctr-aliases")
    assert [(e["action"], e["alias"], e["version"], e["previous_version"]) for e in events] == [
        ("register", "challenger", "1", None),
        ("promote", "champion", "1", None),
        ("register", "", "2", None),
        ("promote", "champion", "2", "1"),
        ("rollback", "champion", "1", "2"),
    ]
    assert events[-1]["reason"] == "CTR dropped"

    # The report's champion/challenger section reads the same registry and events.
    section = release_section(open_lake(config, spark), config)
    assert "<td>champion</td><td>1</td><td>examples v0</td>" in section.html
    assert "<td>newest</td><td>2</td>" in section.html
    assert "CTR dropped" in section.html


def test_promote_refuses_tampered_and_unsigned_models(trained, spark, capsys):
    root, base = trained
    config = release_config(root / "lake", model_name="ctr-refusals")
    registry = Registry(config)
    model = signed_copy(root, base, "t1", 0.0)
    assert cli(root, "ctr-refusals", "promote", str(model), "--reason", "ok") == 0
    assert registry.alias_version(CHAMPION) == "1"

    tampered = signed_copy(root, base, "t2", 0.2)
    with (tampered / MODEL_FILE).open("ab") as f:
        f.write(b"\x00")  # one byte appended after signing
    assert cli(root, "ctr-refusals", "promote", str(tampered), "--reason", "x") == 1
    assert "model.pt changed after signing" in capsys.readouterr().err
    assert cli(root, "ctr-refusals", "register", str(tampered)) == 1

    unsigned = shifted_copy(base, root / "t3", 0.3)
    assert cli(root, "ctr-refusals", "promote", str(unsigned), "--reason", "x") == 1
    assert "is not signed" in capsys.readouterr().err

    # The registered copy is checked too: a file changed in the artifact store is refused.
    stored = signed_copy(root, base, "t4", 0.4)
    assert cli(root, "ctr-refusals", "register", str(stored)) == 0
    source = registry.model_version("2").source
    artifact = source.removeprefix("file://") + f"/{MODEL_FILE}"
    with open(artifact, "ab") as f:
        f.write(b"\x00")
    assert cli(root, "ctr-refusals", "promote", "--version", "2", "--reason", "x") == 1
    assert registry.alias_version(CHAMPION) == "1"
    assert [e["action"] for e in events_of(root, spark, "ctr-refusals")] == [
        "register",
        "promote",
        "register",
    ]
