"""Kafka topics as streaming DataFrames: Spark's built-in `kafka` source or freshlake's own.

`kafka.source`: `builtin` needs the `spark-sql-kafka-0-10` jar (clusters have it); `python` is
`streaming.kafka_source` (Python Data Source API + confluent-kafka); `auto` picks the built-in
source when its classes load. Both give the same columns (key, value, topic, partition, offset,
timestamp, timestampType).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from freshlake.config import Config
from freshlake.spark_compat import data_source_available

KAFKA_COLUMNS = ["key", "value", "topic", "partition", "offset", "timestamp", "timestampType"]


def builtin_kafka_available(spark: SparkSession) -> bool:
    """True when Spark has the built-in Kafka source (spark-sql-kafka-0-10 jar), also through
    Spark Connect."""
    return data_source_available(spark, "kafka")


def kafka_format(spark: SparkSession, config: Config) -> str:
    """The reader format for `kafka.source`: `kafka` (built-in) or `fl-kafka` (ours)."""
    choice = config.kafka.source
    if choice == "auto":
        choice = "builtin" if builtin_kafka_available(spark) else "python"
    if choice == "builtin":
        if not builtin_kafka_available(spark):
            raise RuntimeError(
                "kafka.source=builtin but spark-sql-kafka-0-10 is not on Spark's classpath; "
                "add it with --packages/--jars or use kafka.source=python"
            )
        return "kafka"
    from freshlake.streaming.kafka_source import FORMAT_NAME, register

    register(spark)
    return FORMAT_NAME


def read_kafka_stream(
    spark: SparkSession,
    config: Config,
    topic: str,
    starting_offsets: str | None = None,
) -> DataFrame:
    """A streaming DataFrame of the Kafka topic `topic` (a name, or comma-separated names)."""
    stream = config.streaming
    reader = (
        spark.readStream.format(kafka_format(spark, config))
        .option("kafka.bootstrap.servers", config.kafka.bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", starting_offsets or stream.starting_offsets)
    )
    if stream.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(stream.max_offsets_per_trigger))
    for key, value in config.kafka.client.items():
        reader = reader.option(f"kafka.{key}", value)
    return reader.load().select(*KAFKA_COLUMNS)
