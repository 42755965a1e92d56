"""The Spark session factory: a local JVM tuned for small machines, or the cluster's own session.

Under `spark-submit`, YARN or a Databricks job a session (or its launcher) already exists and
freshlake only adds runtime SQL settings; it never overrides the master or cluster resources.
"""

from __future__ import annotations

import contextlib
import os
import sys

from pyspark.sql import SparkSession

from freshlake.config import Config, SparkConfig

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


def get_spark(config: Config | SparkConfig | None = None) -> SparkSession:
    """Return the active session or build one from the `spark` config section."""
    spark_cfg = config.spark if isinstance(config, Config) else (config or SparkConfig())
    active = SparkSession.getActiveSession()
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
    session.sparkContext.setLogLevel("WARN")
    return session


def _is_local_master(master: str | None) -> bool:
    return master is None or master.startswith(("local", "spark://127.0.0.1", "local-cluster"))


def _try_set(session: SparkSession, key: str, value: str) -> None:
    """Set a runtime SQL conf; static confs of an existing session are left as the launcher set them."""
    with contextlib.suppress(Exception):  # static conf of a running cluster session
        session.conf.set(key, value)


def jvm_class_available(spark: SparkSession, class_name: str) -> bool:
    """True when Spark's JVM can load `class_name` (e.g. a connector jar is on the classpath)."""
    try:
        jvm = spark._jvm  # noqa: SLF001 - no public API to probe the classpath
        if jvm is None:  # Spark Connect: no JVM in this process
            return False
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName(class_name, False, loader)
    except Exception:  # noqa: BLE001 - any failure means the class is not loadable
        return False
    return True
