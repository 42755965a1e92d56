"""The canary: a mis-calibrated challenger is rolled back with an alert; a better one passes."""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow.compute as pc
import pytest

from freshlake.lake import open_lake
from freshlake.monitor import MONITOR_TABLE
from freshlake.release.canary import PENDING, CanaryState, canary_pass
from freshlake.release.events import read_events
from freshlake.release.qualify import qualify
from freshlake.release.registry import CHALLENGER, CHAMPION, Registry
from freshlake.release.signing import sign_model
from tests.release_models import release_config, shifted_copy, train_model, write_examples


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("canary")
    write_examples(root / "lake", "examples", 30_000, seed=3)
    return root, train_model(release_config(root / "lake"), root / "base")


def no_lake():
    raise AssertionError("a pass without a verdict opened the event lake (and Spark)")


def signed(config, model):
    loose = config.model_copy(
        update={
            "release": config.release.model_copy(
                update={"calibration_band": (0.2, 5.0), "max_ne": 2.0}
            )
        }
    )
    assert qualify(loose, model)["qualified"]
    sign_model(model, config.release.signing_key_env)
    return model


def champion_and_challenger(config, champion, challenger) -> Registry:
    registry = Registry(config)
    registry.register(champion, alias=None)
    registry.promote("1", "baseline")
    registry.register(challenger)
    assert registry.alias_version(CHALLENGER) == "2"
    return registry


# About a minute on a cold machine (two passes, two checkouts, the first Delta writes).
@pytest.mark.slow
def test_a_mis_calibrated_challenger_is_rolled_back_with_an_alert(trained, spark):
    root, base = trained
    config = release_config(
        root / "lake", model_name="ctr-canary-bad", canary_table="fresh_a", canary_min_rows=1500
    )
    lake = open_lake(config, spark)
    good = signed(config, shifted_copy(base, root / "good-a", 0.0))
    bad = signed(config, shifted_copy(base, root / "bad-a", 1.5))
    registry = champion_and_challenger(config, good, bad)

    # The first rows to arrive: too few to judge.
    first = write_examples(root / "lake", "fresh_a", 8_000, seed=10, days=1, start=date(2026, 2, 1))
    outcome = canary_pass(config, registry, no_lake)
    assert outcome["status"] == PENDING
    newest = pc.max(first.column("served_at")).as_py()
    matured = pc.sum(pc.less_equal(first.column("served_at"), newest - timedelta(hours=1))).as_py()
    assert 0 < outcome["rows"] <= matured < first.num_rows
    assert CanaryState.from_tags(registry.model_version("2").tags, "1").rows == outcome["rows"]

    # More rows arrive; only those matured since the last pass are scored.
    write_examples(root / "lake", "fresh_a", 20_000, seed=11, days=1, start=date(2026, 2, 2))
    outcome = canary_pass(config, registry, lambda: lake)
    assert outcome["status"] == "rolled_back"
    assert outcome["rows"] >= 1500 and outcome["new_rows"] == outcome["rows"] - matured
    assert outcome["log_loss_challenger"] > outcome["log_loss_champion"] * 1.02

    assert registry.alias_version(CHALLENGER) == registry.alias_version(CHAMPION) == "1"
    assert registry.model_version("2").tags["canary"] == "failed"
    alerts = lake.read(MONITOR_TABLE).where("name = 'canary'").collect()
    assert [(a.status, a.subject) for a in alerts] == [("alert", "ctr-canary-bad v2")]
    assert alerts[0].value > alerts[0].threshold == 0.02
    events = [e for e in read_events(lake) if e["model_name"] == "ctr-canary-bad"]
    assert [(e["action"], e["alias"], e["version"], e["previous_version"]) for e in events] == [
        ("reject", "challenger", "1", "2")
    ]
    # The challenger alias is the champion again: nothing left to compare.
    assert canary_pass(config, registry, no_lake)["status"] == "idle"


def test_a_better_challenger_passes_and_is_promoted(trained, spark):
    root, base = trained
    config = release_config(
        root / "lake", model_name="ctr-canary-good", canary_table="fresh_b", canary_min_rows=1000
    )
    lake = open_lake(config, spark)
    worse = signed(config, shifted_copy(base, root / "worse-b", -1.0))
    good = signed(config, shifted_copy(base, root / "good-b", 0.0))
    registry = champion_and_challenger(config, worse, good)
    write_examples(root / "lake", "fresh_b", 20_000, seed=12, days=1, start=date(2026, 2, 1))

    outcome = canary_pass(config, registry, lambda: lake, promote=True)
    assert outcome["status"] == "passed"
    assert outcome["log_loss_challenger"] < outcome["log_loss_champion"]
    assert registry.alias_version(CHAMPION) == "2"
    assert registry.model_version("2").tags["previous_champion"] == "1"
    rows = lake.read(MONITOR_TABLE).where("subject = 'ctr-canary-good v2'").collect()
    assert [r.status for r in rows] == ["ok"]
