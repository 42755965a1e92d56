"""Distributed mode, proven: the same jobs on a real Spark standalone cluster (a master and two
workers as separate processes, executors in their own JVMs and Python workers) write the same
tables, row for row, as local mode — including the atomic Delta commit of executor-written files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import MapType

from freshlake.cluster import start_cluster, stop_cluster

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# Columns that name the run or the wall clock, so differ between any two runs. A quarantine
# `detail` of future_timestamp names the run's clock, and its `dt` is the quarantine date.
RUN_COLUMNS = {"run_id", "ingest_run_id", "quarantined_at", "computed_at"}
RUN_COLUMNS_OF = {"quarantine": {"detail", "dt"}}
END, DAYS = "2026-01-06", "5"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("cluster")
    running = start_cluster(state, workers=2, cores_per_worker=1, memory_per_worker="1g")
    yield running
    stop_cluster(state)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    out = tmp_path_factory.mktemp("logs")
    freshlake(
        "generate-logs", "--out", str(out), "--impressions", "20000", "--set", "generate.days=5"
    )
    return out


def freshlake(*args: str, env: dict[str, str] | None = None) -> str:
    """Run a freshlake command in its own process (its own driver JVM) and return its output."""
    result = subprocess.run(
        [sys.executable, "-m", "freshlake.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=900,
    )
    assert result.returncode == 0, (
        f"freshlake {args[0]} failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    )
    return result.stdout


def pipeline(master: str, lake_root: Path, logs: Path) -> None:
    common = ["--set", f"spark.master={master}", "--set", f"lake.root={lake_root}"]
    freshlake("ingest", "--logs", str(logs), *common)
    freshlake("item-stats", "--end", END, "--window-days", DAYS, *common)
    freshlake("build-training-set", "--end", END, "--window-days", DAYS, *common)


def same_rows(spark, table: str, left: Path, right: Path) -> int:
    """Assert two copies of a table hold the same rows (run ids aside); return the row count."""
    from deltalake import DeltaTable

    def rows(root: Path):
        files = DeltaTable(str(root / table)).file_uris()
        df = spark.read.option("basePath", str(root / table)).parquet(*files)
        # Set operations cannot compare maps: compare their sorted entries instead.
        return df.select(
            *[
                F.array_sort(F.map_entries(f.name)).alias(f.name)
                if isinstance(f.dataType, MapType)
                else F.col(f.name)
                for f in df.schema.fields
                if f.name not in RUN_COLUMNS | RUN_COLUMNS_OF.get(table, set())
            ]
        )

    a, b = rows(left), rows(right)
    assert sorted(a.columns) == sorted(b.columns)
    b = b.select(*a.columns)
    assert a.exceptAll(b).count() == 0 and b.exceptAll(a).count() == 0, f"{table} differs"
    return a.count()


@pytest.fixture(scope="module")
def lakes(cluster, logs, tmp_path_factory):
    """The same pipeline run on the cluster and in local mode: (cluster lake, local lake)."""
    root = tmp_path_factory.mktemp("lakes")
    pipeline(cluster.master_url, root / "cluster-lake", logs)
    pipeline("local[2]", root / "local-lake", logs)
    return root / "cluster-lake", root / "local-lake"


def test_ingest_and_builder_on_a_cluster_match_local_mode(spark, lakes):
    for table in ["impressions", "actions", "quarantine", "item_stats", "examples"]:
        assert same_rows(spark, table, *lakes) > 0


def test_torch_distributor_on_the_cluster_writes_the_same_model_card(cluster, lakes, tmp_path):
    cluster_lake, _ = lakes
    train = ["train", "--nproc", "2", "--epochs", "1", "--set", f"lake.root={cluster_lake}"]
    freshlake(
        *train,
        "--out",
        str(tmp_path / "spark-model"),
        "--launcher",
        "spark",
        "--set",
        f"spark.master={cluster.master_url}",
    )
    freshlake(*train, "--out", str(tmp_path / "torchrun-model"))
    cards = [
        json.loads((tmp_path / name / "model_card.json").read_text())
        for name in ("spark-model", "torchrun-model")
    ]
    assert cards[0].keys() == cards[1].keys()
    assert cards[0]["data"] == cards[1]["data"], "both launches read the same snapshot rows"
    assert [c["training"]["world_size"] for c in cards] == [2, 2]


def test_spark_submit_script_runs_a_job_on_the_cluster(cluster, logs, tmp_path):
    lake_root = tmp_path / "lake"
    env = {
        "MASTER": cluster.master_url,
        "DEPLOY_MODE": "client",
        "PACKAGES": "",  # no Maven here; the delta-rs engine needs no jars
        "CONFIG": str(REPO / "conf" / "local.yaml"),
        "SPARK_SUBMIT": str(Path(sys.executable).parent / "spark-submit"),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    result = subprocess.run(
        [
            str(REPO / "deploy" / "spark-submit.sh"),
            "ingest",
            "--logs",
            str(logs),
            "--set",
            f"lake.root={lake_root}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **env},
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "impressions" in result.stdout
    assert (lake_root / "impressions" / "_delta_log").is_dir()
    with urllib.request.urlopen(f"{cluster.ui_url}/json/", timeout=10) as resp:
        apps = json.load(resp)["completedapps"]
    assert "freshlake-ingest" in {app["name"] for app in apps}, "the job did not run on the cluster"
