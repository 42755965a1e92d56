"""The batch training-set builder on synthetic logs with known truth (docs/design.md section 3).

The statistics are checked against the generator's true counts and CTRs, never by recomputing
the builder's formulas: Horvitz–Thompson totals overall and per item, the rare-item boost,
weighted CTR per item, every input row accounted for, identical reruns.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from freshlake.batch.training_set import build_training_set
from freshlake.batch.window import TimeWindow
from freshlake.cli import run_module
from freshlake.config import load_config
from freshlake.features.examples import example_columns
from freshlake.lake import open_lake
from freshlake.runs import JobRun
from freshlake.training.snapshot import open_snapshot
from tests.batch_logs import ATTRIBUTION_S, generate, write_logs
from tests.conftest import REPO

START, END = date(2026, 1, 1), date(2026, 1, 8)
WINDOW = TimeWindow(START, END)
BLACKOUT = date(2026, 1, 3)
END_AT = datetime(2026, 1, 8, tzinfo=UTC)
ACTIONS_UNTIL = END_AT - timedelta(hours=2)
SETTINGS = {
    "sampling.negative_rate": 0.1,
    "sampling.positive_rate": 0.5,
    "sampling.rare_item.min_impressions": 150,
    "sampling.rare_item.boost": 3.0,
    "window.blackout_dates": [BLACKOUT.isoformat()],
    "labels.actions": ["click", "like"],
}
Z = 4.5  # |z| bound for a single check: a false alarm about once in 150,000 runs


def make_config(root, **extra):
    return load_config(REPO / "conf" / "local.yaml", {"lake.root": str(root), **SETTINGS, **extra})


def build(lake, config, window=WINDOW, actions_until=ACTIONS_UNTIL):
    with JobRun("build-training-set", config, lake) as run:
        return build_training_set(lake, config, window, run, actions_until)


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    """60k impressions (+1% duplicates, 0.5% invalid, 20 misdated) built once for the module."""
    root = tmp_path_factory.mktemp("build") / "lake"
    config = make_config(root)
    lake = open_lake(config, spark)
    logs = generate(
        60_000, START, 7, items=300, seed=11, duplicate_share=0.01, invalid_share=0.005, misdated=20
    )
    write_logs(spark, lake, logs)
    report = build(lake, config)
    examples = lake.read("examples").toPandas()
    return config, lake, logs, report, examples


def truth_table(logs) -> pd.DataFrame:
    """The generator's unique impressions with blackout / maturity / eligibility flags."""
    t = logs.truth.copy()
    served = pd.to_datetime(t["served_at"], unit="s", utc=True)
    t["blackout"] = served.dt.date == BLACKOUT
    t["immature"] = t["served_at"] + ATTRIBUTION_S > ACTIONS_UNTIL.timestamp()
    t["eligible"] = ~t["blackout"] & ~t["immature"]
    return t


def test_every_input_row_is_accounted_for(world):
    _, lake, logs, report, examples = world
    t = truth_table(logs)
    dup_blackout = int(t["blackout"].to_numpy()[logs.duplicate_of].sum())
    expected = {
        "quarantined": logs.invalid,
        "outside_window": logs.misdated,
        "blackout": int(t["blackout"].sum()) + dup_blackout,
        "duplicate": len(logs.duplicate_of) - dup_blackout,
        "immature": int((~t["blackout"] & t["immature"]).sum()),
        "written": len(examples),
    }
    assert {k: report.outcomes[k] for k in expected} == expected
    assert report.outcomes["written"] + report.outcomes["not_sampled"] == int(t["eligible"].sum())
    assert report.input_rows == logs.impressions.num_rows == sum(report.outcomes.values())
    assert report.quarantined_by_reason == {"out_of_range": logs.invalid}
    quarantine = lake.read("quarantine").where(F.col("run_id") == report.run_id)
    assert quarantine.count() == logs.invalid
    # The run report is stored in job_runs.
    row = lake.read("job_runs").where(F.col("run_id") == report.run_id).first()
    assert row.status == "succeeded"
    assert row.counts["written"] == len(examples) and row.counts["input"] == report.input_rows
    assert row.output_versions["examples"] == lake.version("examples")
    assert row.input_versions["item_stats"] == report.item_stats_version
    details = json.loads(row.details)
    assert details["horvitz_thompson"]["impressions"]["true"] == int(t["eligible"].sum())


def test_horvitz_thompson_totals_match_the_true_counts(world):
    _, _, logs, _, ex = world
    t = truth_table(logs)
    eligible = t[t["eligible"]]
    inv = 1.0 / ex["sample_prob"]
    var = (1 - ex["sample_prob"]) / ex["sample_prob"] ** 2
    for estimate, variance, true in (
        (inv.sum(), var.sum(), len(eligible)),
        ((ex["label"] * inv).sum(), (ex["label"] * var).sum(), int(eligible["clicked"].sum())),
        (
            (ex["label_like"] * inv).sum(),
            (ex["label_like"] * var).sum(),
            int(eligible["liked"].sum()),
        ),
    ):
        assert abs(estimate - true) < Z * np.sqrt(variance), (estimate, true)


def rare_item_ids(logs) -> set[str]:
    """Items under the rare threshold in the window (item_stats counts every unique impression)."""
    counts = logs.truth.groupby("item_id").size()
    return set(counts[counts < 150].index) | (set(logs.items["item_id"]) - set(counts.index))


def test_horvitz_thompson_per_item(world):
    _, _, logs, _, ex = world
    t = truth_table(logs)
    t = t[t["eligible"]]
    # The design's inclusion probabilities, for the variance of each true total (textbook HT).
    rate = np.where(t["clicked"], 0.5, 0.1) * np.where(t["item_id"].isin(rare_item_ids(logs)), 3, 1)
    p = np.minimum(1.0, rate)
    t = t.assign(var=(1 - p) / p, lvar=t["clicked"] * (1 - p) / p)
    true = t.groupby("item_id").agg(
        n=("clicked", "size"), clicks=("clicked", "sum"), var=("var", "sum"), lvar=("lvar", "sum")
    )
    ex = ex.assign(inv=1 / ex["sample_prob"], linv=ex["label"] / ex["sample_prob"])
    est = ex.groupby("item_id")[["inv", "linv"]].sum()
    assert set(est.index) <= set(true.index)
    joined = true.join(est, how="left").fillna(0.0)
    for value, variance, target in (("inv", "var", "n"), ("linv", "lvar", "clicks")):
        exact = joined[joined[variance] == 0]  # kept with probability 1: no sampling error
        assert np.allclose(exact[value], exact[target])
        testable = joined[(joined["n"] >= 100) & (joined[variance] > 0)]
        z = (testable[value] - testable[target]) / np.sqrt(testable[variance])
        k = len(z)
        assert k > 30
        assert (z.abs() < 5).all(), z[z.abs() >= 5]
        # sum of z^2 over items: chi-square with k degrees of freedom.
        assert abs((z**2).mean() - 1) < 5 * np.sqrt(2 / k)
        assert abs(z.mean()) < Z / np.sqrt(k)


def test_rare_items_are_boosted_by_the_configured_factor(world):
    _, _, logs, report, ex = world
    t = truth_table(logs)
    rare_items = rare_item_ids(logs)
    is_rare = ex["stratum"].str.endswith("_rare")
    assert set(ex.loc[is_rare, "item_id"]) <= rare_items
    assert set(ex.loc[~is_rare, "item_id"]).isdisjoint(rare_items)
    # The kept share of negatives is the configured rate, times the boost for rare items.
    elig = t[t["eligible"] & ~t["clicked"]]
    for rare, rate in ((True, 0.1 * 3.0), (False, 0.1)):
        population = int(
            elig["item_id"].isin(rare_items).sum()
            if rare
            else (~elig["item_id"].isin(rare_items)).sum()
        )
        kept = int(((ex["label"] == 0) & (is_rare == rare)).sum())
        assert abs(kept / population - rate) < Z * np.sqrt(rate * (1 - rate) / population)
    assert report.written_by_stratum["negative_rare"] == int(((ex["label"] == 0) & is_rare).sum())


def test_weighted_ctr_per_item_matches_the_true_ctr(world):
    _, _, logs, _, ex = world
    true_ctr = logs.items.set_index("item_id")["true_ctr"]
    checked = 0
    for item, rows in ex.groupby("item_id"):
        w, y = rows["weight"].to_numpy(), rows["label"].to_numpy()
        if w.sum() < 600:
            continue
        ctr = (w * y).sum() / w.sum()
        # Ratio-estimator standard error: covers both the clicks' and the sampling's randomness.
        se = np.sqrt((w**2 * (y - ctr) ** 2).sum()) / w.sum()
        assert abs(ctr - true_ctr[item]) < Z * se, (item, ctr, true_ctr[item], se)
        checked += 1
    assert checked >= 8


def test_examples_follow_the_contract(world):
    config, lake, _, report, ex = world
    table = lake.read("examples")
    assert table.columns == example_columns(config.labels, config.features.spec)
    types = dict(table.dtypes)
    assert types["label"] == "int" and types["weight"] == "double" and types["dt"] == "date"
    assert types["f_query"] == "array<bigint>" and types["f_hour_missing"] == "int"
    assert ((ex["sample_prob"] > 0) & (ex["sample_prob"] <= 1)).all()
    assert np.allclose(ex["weight"], ex["recency_weight"] / ex["sample_prob"])
    assert set(ex["source"]) == {"batch"} and set(ex["run_id"]) == {report.run_id}
    days = set(pd.to_datetime(ex["dt"]).dt.date)
    assert days == set(WINDOW.days) - {BLACKOUT}
    eval_rows = ex["split"] == "eval"
    assert (pd.to_datetime(ex.loc[eval_rows, "dt"]).dt.date == date(2026, 1, 7)).all()
    assert eval_rows.any() and (~eval_rows).any()


def test_rows_inside_each_file_are_in_hash_order_not_id_order(world):
    """The loader's `blocks` shuffle takes runs of consecutive rows as uniform samples: the
    generator's ids count up (imp00000000, ...), and the dedup leaves rows sorted by id."""
    _, lake, _, _, _ = world
    files = open_snapshot(lake.uri("examples")).files
    assert files
    for data_file in files:
        ids = pq.read_table(data_file.uri, columns=["impression_id"]).column(0).to_pylist()
        if len(ids) < 400:
            continue
        rank = np.argsort(np.argsort(ids))
        rho = np.corrcoef(np.arange(len(ids)), rank)[0, 1]
        assert abs(rho) < Z / np.sqrt(len(ids)), f"{data_file.uri}: rows follow their ids"


def _rows(lake, version=None):
    df = lake.read("examples", version).drop("run_id")
    return sorted(
        tuple(r)
        for r in df.select(sorted(df.columns))
        .withColumn("features", F.to_json("features"))
        .collect()
    )


def test_rerun_with_other_partitioning_gives_identical_rows(world, spark):
    config, lake, _, report, _ = world
    before_version = lake.version("examples")
    before = _rows(lake)
    spark.conf.set("spark.sql.shuffle.partitions", "5")
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(64 * 1024))
    try:
        again = build(lake, config)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", "2")
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert lake.version("examples") == before_version + 1  # one atomic commit
    assert _rows(lake) == before
    assert again.outcomes == report.outcomes
    run_ids = {r.run_id for r in lake.read("examples").select("run_id").distinct().collect()}
    assert run_ids == {again.run_id}  # the old rows of the window were replaced, not kept


def test_a_window_replaces_only_its_own_partitions(world):
    config, lake, *_ = world
    before = lake.read("examples").groupBy("dt", "run_id").count().collect()
    sub = TimeWindow(date(2026, 1, 4), date(2026, 1, 6))
    report = build(lake, config, sub)
    after = {
        (r.dt, r.run_id): r["count"]
        for r in lake.read("examples").groupBy("dt", "run_id").count().collect()
    }
    for r in before:
        if r.dt in sub.days:
            assert (r.dt, r.run_id) not in after
        else:
            assert after[(r.dt, r.run_id)] == r["count"]
    assert (
        sum(n for (d, rid), n in after.items() if rid == report.run_id)
        == report.outcomes["written"]
    )


def test_a_window_without_actions_still_gets_every_count(spark, tmp_path):
    """No action can label the window: the plan's actions side is empty, which Spark's
    optimizer would replace by an empty relation, dropping the observations on it (the
    builder failed in pyspark's toPyRow, or with a KeyError through Spark Connect)."""
    config = make_config(tmp_path / "lake", **{"sampling.rare_item.boost": 1.0})
    lake = open_lake(config, spark)
    logs = generate(150, START, 3, items=20, seed=3)
    day_two = datetime(2026, 1, 3, tzinfo=UTC)
    logs.actions = logs.actions.filter(pc.greater_equal(logs.actions["action_at"], day_two))
    assert logs.actions.num_rows > 0  # the log has actions, none of them near day one
    write_logs(spark, lake, logs)
    rules = "spark.sql.adaptive.optimizer.excludedRules"
    before = spark.conf.get(rules, None)

    report = build(lake, config, TimeWindow(START, START + timedelta(days=1)), END_AT)

    assert report.actions == {"actions_input": 0, "actions_duplicate": 0}
    day_one = int((logs.truth["served_at"] < day_two.timestamp() - 86_400).sum())
    assert report.input_rows == day_one == sum(report.outcomes.values())
    assert report.outcomes["written"] > 0 and report.horvitz_thompson["click"].true == 0
    examples = lake.read("examples")
    assert examples.count() == report.outcomes["written"]
    assert examples.where(F.col("label") != 0).count() == 0
    assert spark.conf.get(rules, None) == before  # the build restores the session's settings


def test_cli_run_and_the_quality_gate(spark, tmp_path, capsys):
    root = tmp_path / "lake"
    lake = open_lake(make_config(root), spark)
    write_logs(spark, lake, generate(2_000, START, 7, items=20, seed=3, invalid_share=0.04))
    argv = ["--end", "2026-01-08", "--window-days", "7", "--set", f"lake.root={root}"]

    # 80 of 2,080 rows (3.8%) are invalid: above a 1% limit the run fails and writes nothing.
    strict = [*argv, "--set", "quality.max_bad_share=0.01"]
    assert run_module("freshlake.jobs.build_training_set", strict) == 1
    assert "failed validation, above quality.max_bad_share=1.00%" in capsys.readouterr().err
    assert not lake.exists("examples")
    failed = lake.read("job_runs").first()
    assert failed.status == "failed" and "QualityError" in failed.error
    assert failed.counts["quarantined"] == 80 and lake.read("quarantine").count() == 80

    # Under the default 5% limit it succeeds and prints the report.
    assert (
        run_module(
            "freshlake.jobs.build_training_set", [*argv, "--actions-until", "2026-01-08T02:00"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "window [2026-01-01, 2026-01-08)" in out and "Horvitz-Thompson" in out
    assert lake.read("examples").count() > 0


@pytest.mark.slow
def test_statistics_on_the_project_generator(spark, tmp_path):
    """200k impressions from freshlake.synth, ingested with freshlake.ingest, against its truth."""
    import pyarrow.parquet as pq

    from freshlake.ingest.files import ingest_files, logs_layout
    from freshlake.synth import generate_logs

    config = make_config(
        tmp_path / "lake",
        **{
            "generate.impressions": 200_000,
            "generate.formats": ["parquet"],
            "window.blackout_dates": [],
        },
    )
    manifest = generate_logs(config.generate, tmp_path / "logs")
    ingest_files(config, spark, logs_layout(str(tmp_path / "logs")))
    lake = open_lake(config, spark)
    start = config.generate.start
    window = TimeWindow(start, start + timedelta(days=config.generate.days))
    report = build(lake, config, window, actions_until=window.end_at + timedelta(hours=2))
    truth = pq.read_table(tmp_path / "logs" / "truth" / "impressions.parquet").to_pandas()
    items = pq.read_table(tmp_path / "logs" / "truth" / "items.parquet").to_pandas()

    assert (
        report.outcomes["duplicate"] == manifest["formats"]["parquet"]["impressions"]["duplicates"]
    )
    assert report.outcomes["written"] + report.outcomes["not_sampled"] == len(truth)
    assert report.horvitz_thompson["click"].true == int(truth["clicked"].sum())

    ex = lake.read("examples").select("item_id", "label", "sample_prob", "weight").toPandas()
    rare = set(items.loc[items["impressions"] < 150, "item_id"])
    rate = np.where(truth["clicked"], 0.5, 0.1) * np.where(truth["item_id"].isin(rare), 3, 1)
    p = np.minimum(1.0, rate)
    truth = truth.assign(var=(1 - p) / p, lvar=truth["clicked"] * (1 - p) / p)
    true = truth.groupby("item_id").agg(
        n=("clicked", "size"), clicks=("clicked", "sum"), var=("var", "sum"), lvar=("lvar", "sum")
    )
    ex = ex.assign(inv=1 / ex["sample_prob"], linv=ex["label"] / ex["sample_prob"])
    joined = true.join(ex.groupby("item_id")[["inv", "linv"]].sum(), how="left").fillna(0.0)
    for value, variance, target in (("inv", "var", "n"), ("linv", "lvar", "clicks")):
        testable = joined[(joined["n"] >= 100) & (joined[variance] > 0)]
        z = (testable[value] - testable[target]) / np.sqrt(testable[variance])
        assert len(z) > 30 and (z.abs() < 5).all(), z[z.abs() >= 5]
        assert abs((z**2).mean() - 1) < 5 * np.sqrt(2 / len(z))

    true_ctr = items.set_index("item_id")["true_ctr"]
    checked = 0
    for item, rows in ex.groupby("item_id"):
        w, y = rows["weight"].to_numpy(), rows["label"].to_numpy()
        if w.sum() < 2000:
            continue
        ctr = (w * y).sum() / w.sum()
        se = np.sqrt((w**2 * (y - ctr) ** 2).sum()) / w.sum()
        assert abs(ctr - true_ctr[item]) < Z * se, (item, ctr, true_ctr[item], se)
        checked += 1
    assert checked >= 10
