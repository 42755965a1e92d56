"""The one place that knows a Spark session may be classic (a JVM in this process) or a Spark
Connect client (Databricks serverless and shared clusters, `spark.remote`).

Everything else in freshlake uses the DataFrame, SQL, reader and streaming APIs both kinds
share; what only a classic session has (`sparkContext`, `_jvm`, `_jsc`, RDDs) is reached from
here alone, with a form that works in both where one exists. `tests/test_connect_compat.py`
checks that no other module touches them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from pyspark.sql import SparkSession

# Error conditions of a reader format that no jar, registered class or Python data source
# provides (Spark names the missing Kafka connector separately).
_NOT_FOUND = {"DATA_SOURCE_NOT_FOUND", "KAFKA_DATA_SOURCE_NOT_ENABLED"}
_CONDITION = re.compile(r"\[([A-Z][A-Z0-9_]+)\]")


def is_connect(spark: SparkSession) -> bool:
    """True when `spark` is a Spark Connect client session (no JVM in this process)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def quiet_logs(spark: SparkSession, level: str = "WARN") -> None:
    """Set the log level of a JVM this process started; a Connect server keeps its own."""
    if not is_connect(spark):
        spark.sparkContext.setLogLevel(level)


def data_source_available(spark: SparkSession, name: str) -> bool:
    """True when Spark can resolve reader format `name` (`delta`, `kafka`, a class name).

    Works for both kinds of session: it asks Spark to analyse a read of a path that does not
    exist, which fails with DATA_SOURCE_NOT_FOUND (or KAFKA_DATA_SOURCE_NOT_ENABLED) only when
    no provider is there; any other error (the path, missing options) means the format itself
    was found. No job runs.
    """
    probe = f"/nonexistent/freshlake-probe-{uuid.uuid4().hex}"
    try:
        spark.read.format(name).load(probe).schema  # noqa: B018 - analysis happens here
    except Exception as exc:  # noqa: BLE001 - the error's condition is the answer
        return not _conditions(exc) & _NOT_FOUND
    return True


def _conditions(exc: BaseException) -> set[str]:
    """The error conditions an exception names: its own, or those a JVM error's text carries."""
    get = getattr(exc, "getCondition", None)
    own = get() if callable(get) else None
    return ({own} if own else set()) | set(_CONDITION.findall(str(exc)))


def session_key(spark: SparkSession) -> str:
    """What identifies one Spark session, whichever Python object wraps it (for per-session
    registrations): the JVM session of a classic one, the server's session id of a Connect one."""
    if is_connect(spark):
        return f"connect:{spark.session_id}"
    return f"jvm:{id(spark._jsparkSession)}"  # noqa: SLF001 - the JVM session is the session


@contextmanager
def session_conf(spark: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    """Set Spark session settings for the statements inside, then restore the previous values."""
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


# The optimizer rules that replace a plan over an empty relation by an empty relation: with an
# observed DataFrame in the replaced part (an empty window's actions, the join side they feed),
# its CollectMetrics never runs and Spark completes its Observation with an empty row (no
# metrics at all: pyspark's toPyRow fails an assertion, a Connect client gets an empty dict).
EMPTY_RELATION_RULES = {
    "spark.sql.optimizer.excludedRules": (
        "org.apache.spark.sql.catalyst.optimizer.PropagateEmptyRelation"
    ),
    "spark.sql.adaptive.optimizer.excludedRules": (
        "org.apache.spark.sql.execution.adaptive.AQEPropagateEmptyRelation"
    ),
}


@contextmanager
def observed_plans_kept(spark: SparkSession) -> Iterator[None]:
    """Inside, the optimizer keeps every observed part of a plan (`EMPTY_RELATION_RULES` are
    excluded, beside any rules already excluded), so each observation gets its metrics, zero
    counts over no rows included; the previous settings are restored after."""
    settings = {}
    for key, rule in EMPTY_RELATION_RULES.items():
        rules = [r for r in (spark.conf.get(key, None) or "").split(",") if r.strip()]
        settings[key] = ",".join(rules if rule in rules else [*rules, rule])
    with session_conf(spark, settings):
        yield
