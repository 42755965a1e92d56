"""Monitors: each check fires on injected trouble and stays quiet on healthy tables; CLI exit code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from freshlake.config import load_config
from freshlake.lake import open_lake
from freshlake.monitor import ALERT, OK, SKIPPED, latest_results
from freshlake.monitor.coverage import label_coverage_check
from freshlake.monitor.freshness import fresh_examples_age, last_commit_time, model_age
from freshlake.monitor.runner import traffic_checks, train_serving_skew
from freshlake.monitor.skew import psi
from tests.conftest import REPO
from tests.monitor_tables import (
    LAST_DAY,
    write_examples,
    write_fresh_examples,
    write_traffic,
)


def make_lake(spark, root):
    config = load_config(
        REPO / "conf" / "local.yaml", {"lake.root": str(root), "sampling.negative_rate": 0.5}
    )
    return config, open_lake(config, spark)


@pytest.fixture(scope="module")
def healthy(spark, tmp_path_factory):
    """Regions in steady shares, clicks logged, fresh examples like the training examples."""
    config, lake = make_lake(spark, tmp_path_factory.mktemp("healthy") / "lake")
    write_traffic(spark, lake)
    write_examples(lake, config)
    write_fresh_examples(lake, config, LAST_DAY)
    return config, lake


@pytest.fixture(scope="module")
def troubled(spark, tmp_path_factory):
    """`apac` stopped and clicks lost on the last day; fresh examples skewed, half their clicks lost."""
    config, lake = make_lake(spark, tmp_path_factory.mktemp("troubled") / "lake")
    write_traffic(spark, lake, stop_region="apac", lose_clicks=True)
    write_examples(lake, config)
    write_fresh_examples(
        lake, config, LAST_DAY - timedelta(days=1), skewed=True, lost_label_share=0.5
    )
    return config, lake


def by_subject(results, name):
    return {r.subject: r for r in results if r.name == name}


def test_traffic_checks_quiet_on_steady_days(healthy):
    config, lake = healthy
    results = traffic_checks(lake, config, None)
    shares = by_subject(results, "source_share")
    assert set(shares) == {"region=eu", "region=us", "region=apac"}
    assert all(r.status == OK and r.day == LAST_DAY for r in shares.values())
    assert by_subject(results, "volume")["impressions"].status == OK
    assert by_subject(results, "ctr")["click"].status == OK


def test_stopped_region_volume_drop_and_lost_clicks_fire(troubled):
    config, lake = troubled
    results = traffic_checks(lake, config, None)
    shares = by_subject(results, "source_share")
    assert shares["region=apac"].status == ALERT and shares["region=apac"].value == 0.0
    assert shares["region=apac"].threshold == pytest.approx(0.25, abs=0.05)
    # The other regions' shares rose: a drop alarm, not a change alarm.
    assert shares["region=eu"].status == OK and shares["region=us"].status == OK
    assert by_subject(results, "volume")["impressions"].status == ALERT
    ctr = by_subject(results, "ctr")["click"]
    assert ctr.status == ALERT and "-100.0%" in ctr.detail
    # The day before was normal: no alert there.
    earlier = traffic_checks(lake, config, LAST_DAY - timedelta(days=1))
    assert [r for r in earlier if r.status != OK] == []


def test_a_day_without_any_impression_fires_on_volume(healthy):
    config, lake = healthy
    results = traffic_checks(lake, config, LAST_DAY + timedelta(days=1))
    volume = by_subject(results, "volume")["impressions"]
    assert volume.status == ALERT and "-100.0%" in volume.detail
    assert by_subject(results, "ctr")["click"].status == SKIPPED


def test_traffic_checks_skip_without_history(healthy):
    config, lake = healthy
    first_day = LAST_DAY - timedelta(days=5)
    assert {r.status for r in traffic_checks(lake, config, first_day)} == {SKIPPED}


def test_psi_is_zero_for_equal_shares_and_grows_with_shift():
    assert psi({0: 10, 1: 30}, {0: 1, 1: 3}) == pytest.approx(0.0)
    small, large = psi({0: 50, 1: 50}, {0: 55, 1: 45}), psi({0: 50, 1: 50}, {0: 90, 1: 10})
    assert 0 < small < 0.05 < large


def test_skew_quiet_when_fresh_examples_match_training(healthy):
    config, lake = healthy
    results = by_subject(train_serving_skew(lake, config), "skew")
    assert {"f_position", "f_hour", "f_device", "f_item_id", "f_region"} <= set(results)
    assert "f_query" not in results  # text features are not compared
    assert all(r.status == OK for r in results.values()), results


def test_skew_fires_on_features_changed_at_serving(troubled):
    config, lake = troubled
    results = by_subject(train_serving_skew(lake, config), "skew")
    assert results["f_position"].status == ALERT and results["f_device"].status == ALERT
    assert results["f_hour"].status == OK and results["f_item_id"].status == OK


def test_label_coverage_quiet_when_every_click_is_joined(healthy):
    config, lake = healthy
    for table in ("examples", "fresh_examples"):
        result = label_coverage_check(lake, table, config)
        assert result.status == OK and result.value == pytest.approx(1.0), result


def test_label_coverage_fires_when_the_join_loses_clicks(troubled):
    config, lake = troubled
    result = label_coverage_check(lake, "fresh_examples", config)
    assert result.status == ALERT and 0.35 < result.value < 0.65, result
    # The batch examples of the same day hold every click.
    batch = label_coverage_check(lake, "examples", config, result.day)
    assert batch.status == OK and batch.value == pytest.approx(1.0)


def test_freshness_and_model_age(healthy, tmp_path):
    from freshlake.training.artifact import write_card

    config, lake = healthy
    committed = last_commit_time(lake, "fresh_examples")
    cfg = config.monitor
    assert fresh_examples_age(lake, cfg, committed + timedelta(minutes=5)).status == OK
    stale = fresh_examples_age(lake, cfg, committed + timedelta(hours=3))
    assert stale.status == ALERT and stale.value == pytest.approx(180, abs=1)

    write_card(tmp_path, {"data": {"table": "examples", "version": 0}})
    now = datetime.now(UTC)
    assert model_age(tmp_path, cfg, now).status == OK
    old = model_age(tmp_path, cfg, now + timedelta(hours=cfg.max_model_age_hours + 1))
    assert old.status == ALERT and old.value > cfg.max_model_age_hours
    assert model_age(None, cfg, now).status == SKIPPED


def test_monitor_cli_exit_code_and_alerts_table(healthy, troubled, capsys):
    from freshlake.cli import main

    for (config, lake), expected in ((healthy, 0), (troubled, 3)):
        assert main(["monitor", "--set", f"lake.root={config.lake.root}"]) == expected
        printed = capsys.readouterr().out
        stored = latest_results(lake)
        assert {r.status for r in stored} >= {OK}
        fired = {(r.name, r.subject) for r in stored if r.status == ALERT}
        assert f"{len(fired)} alert(s)" in printed
    assert ("source_share", "region=apac") in fired and ("skew", "f_position") in fired
    assert ("label_coverage", "fresh_examples") in fired
