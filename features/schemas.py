"""The data contracts of docs/design.md section 2 as Spark schemas, and the stable quarantine codes."""

from __future__ import annotations

from pyspark.sql.types import (
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

STRING_MAP = MapType(StringType(), StringType(), valueContainsNull=True)

# Validated impressions: the `impressions` Delta table, partitioned by `dt` (UTC date of served_at).
IMPRESSION_SCHEMA = StructType(
    [
        StructField("impression_id", StringType(), False),
        StructField("request_id", StringType(), True),
        StructField("user_id", StringType(), False),
        StructField("item_id", StringType(), False),
        StructField("served_at", TimestampType(), False),
        StructField("position", IntegerType(), True),
        StructField("surface", StringType(), True),
        StructField("region", StringType(), True),
        StructField("model_version", StringType(), True),
        StructField("pred_ctr", DoubleType(), True),
        # Context features (device, query text, ...) as strings; typed by the feature spec.
        StructField("features", STRING_MAP, True),
        # Unknown extra fields, kept as JSON text, never a reason to reject a record.
        StructField("extra", STRING_MAP, True),
        StructField("source_file", StringType(), True),
        StructField("ingest_run_id", StringType(), True),
        StructField("dt", DateType(), False),
    ]
)

# Validated actions: the `actions` Delta table, partitioned by `dt` (UTC date of action_at).
ACTION_SCHEMA = StructType(
    [
        StructField("action_id", StringType(), True),
        StructField("impression_id", StringType(), False),
        StructField("user_id", StringType(), True),
        StructField("action", StringType(), False),
        StructField("action_at", TimestampType(), False),
        StructField("value", DoubleType(), True),
        StructField("extra", STRING_MAP, True),
        StructField("source_file", StringType(), True),
        StructField("ingest_run_id", StringType(), True),
        StructField("dt", DateType(), False),
    ]
)

# Every rejected record, with why (a stable code) and its original payload.
QUARANTINE_SCHEMA = StructType(
    [
        StructField("source", StringType(), False),  # impressions | actions | examples ...
        StructField("reason", StringType(), False),  # one of REASONS
        StructField("detail", StringType(), True),
        StructField("raw", StringType(), True),
        StructField("source_file", StringType(), True),
        StructField("topic", StringType(), True),
        StructField("partition", IntegerType(), True),
        StructField("offset", LongType(), True),
        StructField("run_id", StringType(), False),
        StructField("quarantined_at", TimestampType(), False),
        StructField("dt", DateType(), False),  # date of quarantined_at
    ]
)

# Stable reason codes; dashboards and alerts key on them, so never rename one.
REASONS: dict[str, str] = {
    "malformed_json": "payload is not a JSON object",
    "malformed_row": "row could not be parsed (CSV/Parquet field count or encoding)",
    "missing_field": "a required field is missing or empty",
    "bad_type": "a field has the wrong type (e.g. text where a number is expected)",
    "bad_timestamp": "a timestamp could not be parsed",
    "future_timestamp": "event time is later than the ingest clock allows",
    "ancient_timestamp": "event time is before the configured minimum date",
    "out_of_range": "a numeric field is outside its allowed range (e.g. pred_ctr not in [0,1])",
    "unknown_action": "the action type is not one of the configured actions",
    "late": "arrived after the stream watermark",
}

__all__ = [
    "ACTION_SCHEMA",
    "IMPRESSION_SCHEMA",
    "QUARANTINE_SCHEMA",
    "REASONS",
    "STRING_MAP",
]
