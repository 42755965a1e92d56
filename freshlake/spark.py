"""The Spark session factory: a local JVM tuned for small machines, the cluster's own session,
or a Spark Connect client.

Under `spark-submit`, YARN or a Databricks job a session (or its launcher) already exists and
freshlake only adds runtime SQL settings; it never overrides the master or cluster resources.
With `spark.remote` (or $SPARK_REMOTE) set, jobs are clients of that Spark Connect server, as
on Databricks serverless and shared clusters; `freshlake.spark_compat` holds what differs.
"""

from __future__ import annotations

import contextlib
import os
import sys

from pyspark.sql import SparkSession

from freshlake.config import Config, SparkConfig
from freshlake.spark_compat import quiet_logs

# SQL settings every freshlake job relies on, locally and on a cluster.
REQUIRED_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    # Delta files carry partition values in the log; never guess types from folder names.
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
    # Delta readers expect INT64 micros, not Spark's legacy INT96 timestamps.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}

# Only for a JVM freshlake starts itself on this machine.
LOCAL_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.streaming.stateStore.providerClass": (
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
    ),
}


def launched_externally() -> bool:
    """True under spark-submit, pyspark shell or Databricks, where a launcher owns the JVM."""
    return bool(
        os.environ.get("PYSPARK_GATEWAY_PORT") or os.environ.get("DATABRICKS_RUNTIME_VERSION")
    )


def _prepare_local_environment() -> None:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def remote_url(spark_cfg: SparkConfig) -> str | None:
    """The Spark Connect server to use: `spark.remote`, else $SPARK_REMOTE, else None."""
    return spark_cfg.remote or os.environ.get("SPARK_REMOTE") or None


def get_spark(config: Config | SparkConfig | None = None) -> SparkSession:
    """Return the active session or build one from the `spark` config section."""
    spark_cfg = config.spark if isinstance(config, Config) else (config or SparkConfig())
    active = SparkSession.getActiveSession()
    remote = remote_url(spark_cfg)
    if active is None and remote:
        # A Connect client: the server owns master, resources and static settings.
        active = SparkSession.builder.remote(remote).getOrCreate()
    if active is not None or launched_externally():
        # The launcher (spark-submit --name, Databricks) names the application.
        session = active or SparkSession.builder.getOrCreate()
        for key, value in {**REQUIRED_CONF, **spark_cfg.conf}.items():
            _try_set(session, key, value)
        return session

    _prepare_local_environment()
    builder = SparkSession.builder.appName(spark_cfg.app_name)
    if spark_cfg.master:
        builder = builder.master(spark_cfg.master)
    local_only = LOCAL_CONF if _is_local_master(spark_cfg.master) else {}
    for key, value in {
        **local_only,
        **spark_cfg.local_conf,
        **REQUIRED_CONF,
        **spark_cfg.conf,
    }.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    quiet_logs(session, "WARN")
    return session


def _is_local_master(master: str | None) -> bool:
    return master is None or master.startswith(("local", "spark://127.0.0.1", "local-cluster"))


def _try_set(session: SparkSession, key: str, value: str) -> None:
    """Set a runtime SQL conf; static confs of an existing session are left as the launcher set them."""
    with contextlib.suppress(Exception):  # static conf of a running cluster session
        session.conf.set(key, value)
