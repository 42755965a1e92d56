"""Event-time parsing shared by file ingest and the streaming bronze ingest (all UTC).

Accepted forms: ISO-8601 text (`2026-01-01T12:00:00.123456Z`, `+02:00` offsets, a space instead
of `T`, no offset meaning UTC) and epoch milliseconds (a JSON number or a digit string).
Everything else parses to NULL; Spark's special strings (`now`, `yesterday`, `epoch`) are refused.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

# 9999-12-31T23:59:59.999Z in epoch ms: the largest value a Spark timestamp holds comfortably.
MAX_EPOCH_MS = 253_402_300_799_999
ISO_PATTERN = (
    r"^\s*\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)?\s*$"
)
EPOCH_MS_PATTERN = r"^\s*-?\d+(\.\d+)?([eE][+-]?\d+)?\s*$"


def parse_event_time(text: Column) -> Column:
    """A timestamp from ISO-8601 text or epoch milliseconds; NULL when it is neither."""
    epoch_ms = text.try_cast("double")
    from_epoch = F.timestamp_micros(F.round(epoch_ms * 1000).try_cast("long"))
    return (
        F.when(text.rlike(ISO_PATTERN), F.trim(text).try_cast("timestamp"))
        .when(
            text.rlike(EPOCH_MS_PATTERN) & (F.abs(epoch_ms) <= MAX_EPOCH_MS),
            from_epoch,
        )
        .otherwise(F.lit(None).cast("timestamp"))
    )


def iso_text(ts: Column) -> Column:
    """ISO-8601 text with microseconds and a `Z` suffix, the inverse of `parse_event_time`."""
    return F.date_format(ts, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'")


__all__ = ["ISO_PATTERN", "MAX_EPOCH_MS", "iso_text", "parse_event_time"]
