"""Raw JSON records -> validated impressions/actions rows plus quarantine rows (contract 2).

Batch file ingest and the streaming bronze ingest call the same functions. The input is a
DataFrame with a string column `value` (one JSON object per row) and optionally the coordinate
columns `source_file`, `topic`, `partition`, `offset`, and `parse_error` (set by a reader that
could not even split the record, e.g. a broken CSV line). Everything here is a lazy column
transformation, so it works on streaming DataFrames too.

A record is parsed with a permissive `map<string,string>` schema (nested values arrive as their
JSON text), then each field is cast to its contract type. The first failing check gives the
record's one quarantine reason, in this order: malformed_row, malformed_json, missing_field,
bad_type, bad_timestamp, future_timestamp, ancient_timestamp, out_of_range, unknown_action.
`detail` names the field. Fields outside the contract go to `extra` (strings as they are,
numbers/booleans/objects/arrays as JSON text). Nothing is deduplicated here.

Validation is total: whatever bytes a record holds, it is valid or quarantined, and no
expression here can raise under ANSI mode (casts are `try_cast`, numbers are range-checked
before they narrow). A payload that is not valid UTF-8 is a malformed_row (its `raw` keeps the
text with U+FFFD for the bad bytes); an object with a duplicate key, at the top level or in
`features`, is ambiguous and rejected (malformed_json, bad_type); a leading byte order mark
is dropped before parsing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import reduce
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from freshlake.config import Config
from freshlake.features.schemas import (
    ACTION_SCHEMA,
    IMPRESSION_SCHEMA,
    QUARANTINE_SCHEMA,
    STRING_MAP,
)
from freshlake.features.timestamps import iso_text, parse_event_time

# token: a string compared case-insensitively, stored trimmed and lower-cased (action types).
FieldKind = Literal["string", "token", "int", "double", "timestamp", "map"]
COORDINATES = ("source_file", "topic", "partition", "offset")
REASON, DETAIL = "_reason", "_detail"
FAILED_CHECK = "_failed_check"
MAX_DETAIL_VALUE = 120
BYTE_ORDER_MARK = "\ufeff"


@dataclass(frozen=True)
class RecordField:
    """One field of a raw record and the contract type it is cast to."""

    name: str
    kind: FieldKind = "string"
    required: bool = False


@dataclass(frozen=True)
class RecordContract:
    """What a raw record of one kind must hold and which Delta schema the valid rows take."""

    source: str  # impressions | actions: the quarantine `source`
    fields: tuple[RecordField, ...]
    event_time: str  # the timestamp field `dt` is derived from
    schema: StructType

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]


IMPRESSIONS = RecordContract(
    source="impressions",
    fields=(
        RecordField("impression_id", required=True),
        RecordField("request_id"),
        RecordField("user_id", required=True),
        RecordField("item_id", required=True),
        RecordField("served_at", "timestamp", required=True),
        RecordField("position", "int"),
        RecordField("surface"),
        RecordField("region"),
        RecordField("model_version"),
        RecordField("pred_ctr", "double"),
        RecordField("features", "map"),
    ),
    event_time="served_at",
    schema=IMPRESSION_SCHEMA,
)

ACTIONS = RecordContract(
    source="actions",
    fields=(
        RecordField("action_id"),
        RecordField("impression_id", required=True),
        RecordField("user_id"),
        RecordField("action", "token", required=True),
        RecordField("action_at", "timestamp", required=True),
        RecordField("value", "double"),
    ),
    event_time="action_at",
    schema=ACTION_SCHEMA,
)


@dataclass(frozen=True)
class Check:
    """A failure condition with its reason code and a detail text naming the field."""

    reason: str
    failed: Column
    detail: Column


def _text(name: str) -> Column:
    return F.col(f"_t_{name}")


def _typed(name: str) -> Column:
    return F.col(f"_v_{name}")


def _shown(value: Column) -> Column:
    """A field value quoted and shortened for `detail`."""
    short = F.when(
        F.length(value) > MAX_DETAIL_VALUE,
        F.concat(F.substring(value, 1, MAX_DETAIL_VALUE), F.lit("...")),
    ).otherwise(value)
    return F.concat(F.lit("'"), short, F.lit("'"))


def _cast(field: RecordField, text: Column) -> Column:
    """The field's text cast to its contract type; NULL when it does not cast."""
    if field.kind == "int":
        # Through double, so 3.0 and 1.5e3 are whole numbers; NULL when fractional, NaN,
        # infinite or beyond int (try_cast: never an overflow error).
        number = text.try_cast("double")
        whole = number.try_cast("int")
        return F.when(whole.cast("double") == number, whole)
    if field.kind == "double":
        return text.try_cast("double")
    if field.kind == "timestamp":
        return parse_event_time(text)
    if field.kind == "map":
        return _unique_keys(F.col(f"_m_{field.name}"))
    if field.kind == "token":
        return F.lower(F.trim(text))
    return text


def _keys_are_unique(parsed: Column) -> Column:
    """True when no key of the map repeats (from_json keeps every copy of a repeated name)."""
    keys = F.map_keys(parsed)
    return F.size(keys) == F.size(F.array_distinct(keys))


def _unique_keys(parsed: Column) -> Column:
    """The map when its keys are unique, else NULL (JSON with a repeated name is ambiguous)."""
    return F.when(_keys_are_unique(parsed), parsed)


def _only_known_keys(parsed: Column, known: Sequence[str]) -> Column:
    """True when every key is a contract field with a non-null value, each once: the common case.

    Cheap (the lookups are the field extraction's own), and it vouches for a record having no
    repeated key and no extra field; the costly checks below run only when it is false.
    """
    present = [F.when(parsed.getItem(n).isNotNull(), 1).otherwise(0) for n in known]
    return F.size(parsed) == reduce(Column.__add__, present)


def _repeated_keys(keys: Column) -> Column:
    """The keys that occur more than once in an array of keys, comma-separated."""
    repeated = F.filter(keys, lambda k: F.size(F.filter(keys, lambda other: other == k)) > 1)
    return F.array_join(F.array_distinct(repeated), ", ")


def _keys_if_repeated(parsed: Column) -> Column:
    """The map's keys when one of them repeats, else NULL (no lambda: a lambda anywhere in a
    step slows the whole step, so the repeated names are listed only in the detail)."""
    return F.when(~_keys_are_unique(parsed), F.map_keys(parsed))


def _extra_fields(parsed: Column, known: Sequence[str]) -> Column:
    """The fields outside the contract, NULL when there are none (or when a key repeats).

    The record's entries less those of the known names: generated code, unlike a map filter.
    """
    entries = F.map_entries(parsed)
    ours = F.array(
        *[F.struct(F.lit(n).alias("key"), parsed.getItem(n).alias("value")) for n in known]
    )
    others = F.array_except(entries, ours)
    return F.when(_keys_are_unique(parsed) & (F.size(others) > 0), F.map_from_entries(others))


def _parse_checks() -> list[Check]:
    empty = F.when(F.trim(F.coalesce(F.col("value"), F.lit(""))) == "", F.lit("empty payload"))
    return [
        Check("malformed_row", F.col("_parse_error").isNotNull(), F.col("_parse_error")),
        Check(
            "malformed_row",
            ~F.col("_utf8"),
            F.lit("payload is not valid UTF-8"),
        ),
        Check(
            "malformed_json",
            F.col("_unparsed"),
            empty.otherwise(F.lit("payload is not a parseable JSON object")),
        ),
        Check(
            "malformed_json",
            F.col("_repeated").isNotNull(),
            F.concat(F.lit("duplicate keys: "), _repeated_keys(F.col("_repeated"))),
        ),
    ]


def _field_checks(contract: RecordContract) -> list[Check]:
    """missing_field for required fields, then bad_type / bad_timestamp for uncastable ones."""
    checks = [
        Check(
            "missing_field",
            _text(f.name).isNull() | (F.trim(_text(f.name)) == ""),
            F.lit(f"{f.name}: missing or empty"),
        )
        for f in contract.fields
        if f.required
    ]
    uncastable = {"int": "bad_type", "double": "bad_type", "map": "bad_type"}
    for kind, reason in [*uncastable.items(), ("timestamp", "bad_timestamp")]:
        for f in contract.fields:
            if f.kind != kind:
                continue
            expected = "ISO-8601 or epoch ms" if kind == "timestamp" else kind
            checks.append(
                Check(
                    reason,
                    _text(f.name).isNotNull() & _typed(f.name).isNull(),
                    F.concat(F.lit(f"{f.name}: expected {expected}, got "), _shown(_text(f.name))),
                )
            )
    return checks


def _time_checks(contract: RecordContract, config: Config, clock: Column) -> list[Check]:
    """Event times later than the clock allows, or before `ingest.min_event_date`."""
    ahead = config.ingest.max_future_seconds
    latest = clock + F.make_dt_interval(secs=F.lit(ahead))
    earliest = F.lit(config.ingest.min_event_date).cast("timestamp")
    stamps = [f.name for f in contract.fields if f.kind == "timestamp"]
    future = [
        Check(
            "future_timestamp",
            _typed(n) > latest,
            F.concat(
                F.lit(f"{n}: "),
                iso_text(_typed(n)),
                F.lit(f" is more than {ahead} s after the ingest clock "),
                iso_text(clock),
            ),
        )
        for n in stamps
    ]
    ancient = [
        Check(
            "ancient_timestamp",
            _typed(n) < earliest,
            F.concat(
                F.lit(f"{n}: "),
                iso_text(_typed(n)),
                F.lit(f" is before {config.ingest.min_event_date.isoformat()}"),
            ),
        )
        for n in stamps
    ]
    return future + ancient


# field -> (condition on the typed value that fails, what the allowed range is)
RANGES = {
    "pred_ctr": (lambda v: v.isNaN() | (v < 0) | (v > 1), "in [0, 1]"),
    "position": (lambda v: v < 1, ">= 1"),
    "value": (lambda v: v.isNaN(), "a number, not NaN"),
}


def _value_checks(contract: RecordContract, config: Config) -> list[Check]:
    """out_of_range for numeric fields, unknown_action for action types not configured."""
    checks = [
        Check(
            "out_of_range",
            fails(_typed(name)),
            F.concat(F.lit(f"{name}: must be {allowed}, got "), _typed(name).cast("string")),
        )
        for name, (fails, allowed) in RANGES.items()
        if name in contract.names
    ]
    if "action" in contract.names:
        allowed = F.array(*[F.lit(a) for a in config.labels.actions])
        checks.append(
            Check(
                "unknown_action",
                ~F.array_contains(allowed, _typed("action")),
                F.concat(
                    F.lit("action: "),
                    _shown(_text("action")),
                    F.lit(f" is not one of {config.labels.actions}"),
                ),
            )
        )
    return checks


def _checks(contract: RecordContract, config: Config, clock: Column) -> list[Check]:
    """Every check of a record, in the order that decides its single reason."""
    return (
        _parse_checks()
        + _field_checks(contract)
        + _time_checks(contract, config, clock)
        + _value_checks(contract, config)
    )


def _failed_check(checks: Sequence[Check]) -> Column:
    """The index of the first failing check, NULL when every check passes.

    Each condition is evaluated once per record (in order, stopping at the first failure);
    reason and detail are then looked up by this index, so a valid record never builds a detail.
    """
    index = F.when(checks[0].failed, F.lit(0))
    for position, check in enumerate(checks[1:], start=1):
        index = index.when(check.failed, F.lit(position))
    return index


def _reason_and_detail(checks: Sequence[Check], index: Column) -> tuple[Column, Column]:
    """The reason code and detail of the check at `index` (both NULL when it is NULL)."""
    reason = detail = F.when(index.isNull(), F.lit(None).cast("string"))
    for position, check in enumerate(checks):
        reason = reason.when(index == position, F.lit(check.reason))
        detail = detail.when(index == position, check.detail)
    return reason, detail


def _with_coordinates(raw: DataFrame, keep: Sequence[str] = ()) -> DataFrame:
    """`raw` with every optional coordinate column present (NULL where the source has none),
    and the columns named in `keep` as they are."""
    types = {"source_file": "string", "topic": "string", "partition": "int", "offset": "long"}
    columns = [F.col("value").cast("string").alias("value")]
    for name in COORDINATES:
        present = name in raw.columns
        columns.append((F.col(name) if present else F.lit(None)).try_cast(types[name]).alias(name))
    error = F.col("parse_error") if "parse_error" in raw.columns else F.lit(None)
    columns.append(error.cast("string").alias("_parse_error"))
    columns += [F.col(name) for name in keep]
    return raw.select(*columns).withColumn(
        "_utf8", F.coalesce(F.is_valid_utf8("value"), F.lit(True))
    )


def _json_text(value: Column) -> Column:
    """The payload to parse: without a leading byte order mark."""
    return F.when(value.startswith(BYTE_ORDER_MARK), F.substring(value, 2, 2**31 - 1)).otherwise(
        value
    )


def check_records(
    raw: DataFrame,
    contract: RecordContract,
    config: Config,
    clock: Column,
    keep: Sequence[str] = (),
) -> DataFrame:
    """Each record with its typed fields `_v_<field>`, `extra`, `_failed_check`, `_reason` and
    `_detail`.

    `_failed_check` (the index of the first failing check) and `_reason` are NULL for a valid
    record; `value` (the raw payload) is kept only for rejected ones, so a batch job can persist
    this narrow frame and write both outputs from it. Split it with `valid_rows` and
    `quarantine_rows` (they filter on `_failed_check`: a filter on `_reason` would be rewritten
    by Spark's optimizer into one copy of every check per reason).

    `clock` may be a column of `raw` (each record judged against its own source's clock), and
    the columns named in `keep` pass through: a job checking many sources checks their union
    once, so Spark generates and compiles the checks once, not once per source.

    Cost: the common record (only contract fields, no repeated key) is vouched for by a cheap
    key count; extra fields and repeated keys are looked for only in the others.
    """
    parsed = _with_coordinates(raw, keep).withColumn(
        "_parsed",
        F.when(
            F.col("_parse_error").isNull() & F.col("_utf8"),
            F.from_json(_json_text(F.col("value")), STRING_MAP),
        ),
    )
    # Nested objects are parsed right after the record, so that every later step is generated
    # code Spark runs as one stage (a parse cannot be: each would copy the row once more).
    maps = [f.name for f in contract.fields if f.kind == "map"]
    nested = parsed.select(
        "*", *[F.from_json(F.col("_parsed").getItem(n), STRING_MAP).alias(f"_m_{n}") for n in maps]
    )
    simple = _only_known_keys(F.col("_parsed"), contract.names)
    texts = nested.select(
        *[c for c in nested.columns if c != "_parsed"],
        *[F.col("_parsed").getItem(n).alias(f"_t_{n}") for n in contract.names],
        F.when(~simple, _extra_fields(F.col("_parsed"), contract.names)).alias("extra"),
        F.when(~simple, _keys_if_repeated(F.col("_parsed"))).alias("_repeated"),
        F.col("_parsed").isNull().alias("_unparsed"),
    )
    typed = texts.select(
        "*",
        *[_cast(field, _text(field.name)).alias(f"_v_{field.name}") for field in contract.fields],
    )
    checks = _checks(contract, config, clock)
    failed = typed.select("*", _failed_check(checks).alias(FAILED_CHECK))
    reason, detail = _reason_and_detail(checks, F.col(FAILED_CHECK))
    checked = failed.select("*", reason.alias(REASON), detail.alias(DETAIL))
    return checked.select(
        F.when(F.col(REASON).isNotNull(), F.make_valid_utf8("value")).alias("value"),
        *COORDINATES,
        *[f"_v_{name}" for name in contract.names],
        "extra",
        FAILED_CHECK,
        REASON,
        DETAIL,
        *keep,
    )


def valid_rows(checked: DataFrame, contract: RecordContract, run_id: str) -> DataFrame:
    """The records that passed, in the contract's Delta schema (column order and types)."""
    values = {f.name: _typed(f.name) for f in contract.fields}
    values |= {
        "extra": F.col("extra"),
        "source_file": F.col("source_file"),
        "ingest_run_id": F.lit(run_id),
        "dt": F.to_date(_typed(contract.event_time)),
    }
    return checked.where(F.col(FAILED_CHECK).isNull()).select(
        *[values[f.name].cast(f.dataType).alias(f.name) for f in contract.schema.fields]
    )


def quarantine_rows(
    checked: DataFrame, contract: RecordContract, run_id: str, clock: Column
) -> DataFrame:
    """The rejected records in QUARANTINE_SCHEMA, each with its reason, detail and raw payload."""
    values = {
        "source": F.lit(contract.source),
        "reason": F.col(REASON),
        "detail": F.col(DETAIL),
        "raw": F.col("value"),
        "source_file": F.col("source_file"),
        "topic": F.col("topic"),
        "partition": F.col("partition"),
        "offset": F.col("offset"),
        "run_id": F.lit(run_id),
        "quarantined_at": clock,
        "dt": F.to_date(clock),
    }
    return checked.where(F.col(FAILED_CHECK).isNotNull()).select(
        *[values[f.name].cast(f.dataType).alias(f.name) for f in QUARANTINE_SCHEMA.fields]
    )


def run_clock(now: datetime | None) -> Column:
    """The ingest clock: a fixed instant for a batch run, or each micro-batch's current time."""
    if now is None:
        return F.current_timestamp()
    return F.lit(now if now.tzinfo else now.replace(tzinfo=UTC)).cast("timestamp")


def validate(
    raw: DataFrame,
    contract: RecordContract,
    config: Config,
    run_id: str,
    now: datetime | None = None,
) -> tuple[DataFrame, DataFrame]:
    """(valid rows, quarantine rows) of raw JSON records of one kind; lazy, no Spark actions."""
    clock = run_clock(now)
    checked = check_records(raw, contract, config, clock)
    return valid_rows(checked, contract, run_id), quarantine_rows(checked, contract, run_id, clock)


def validate_impressions(
    raw: DataFrame, config: Config, run_id: str, now: datetime | None = None
) -> tuple[DataFrame, DataFrame]:
    """(IMPRESSION_SCHEMA rows, QUARANTINE_SCHEMA rows) from raw impression JSON in `value`."""
    return validate(raw, IMPRESSIONS, config, run_id, now)


def validate_actions(
    raw: DataFrame, config: Config, run_id: str, now: datetime | None = None
) -> tuple[DataFrame, DataFrame]:
    """(ACTION_SCHEMA rows, QUARANTINE_SCHEMA rows) from raw action JSON in `value`."""
    return validate(raw, ACTIONS, config, run_id, now)


CONTRACTS: dict[str, RecordContract] = {"impressions": IMPRESSIONS, "actions": ACTIONS}

__all__ = [
    "ACTIONS",
    "CONTRACTS",
    "IMPRESSIONS",
    "RecordContract",
    "RecordField",
    "check_records",
    "quarantine_rows",
    "run_clock",
    "valid_rows",
    "validate",
    "validate_actions",
    "validate_impressions",
]
