import pytest

from freshlake.config import ConfigError, build_config, load_config, parse_override


def test_local_and_cluster_configs_validate():
    local = load_config("local.yaml")
    cluster = load_config("cluster.yaml")
    assert local.spark.master == "local[2]"
    assert cluster.spark.master is None
    assert cluster.lake.engine == "delta-spark"


def test_overrides_are_parsed_as_yaml_and_validated():
    cfg = load_config(
        "local.yaml", ["sampling.negative_rate=0.1", "window.blackout_dates=[2026-01-03]"]
    )
    assert cfg.sampling.negative_rate == pytest.approx(0.1)
    assert [d.isoformat() for d in cfg.window.blackout_dates] == ["2026-01-03"]


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError, match=r"sampling\.negative_rate"):
        build_config({}, ["sampling.negative_rate=1.5"])


def test_unknown_key_is_rejected_not_ignored():
    with pytest.raises(ConfigError, match=r"sampling\.negative_rat"):
        build_config({"sampling": {"negative_rat": 0.1}})


def test_override_needs_equals():
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_override("sampling.negative_rate")


def test_missing_file_is_a_clear_error():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/freshlake.yaml")


def test_config_hash_changes_with_content():
    assert build_config({}).config_hash() == build_config({}).config_hash()
    assert build_config({}).config_hash() != build_config({}, ["sampling.seed=1"]).config_hash()
