"""Faults real logs have: exact re-sends (duplicates) and malformed records of every kind.

A malformed record is an extra record, a copy of a real one with a fresh id and exactly one
defect, named by the quarantine reason code (features/schemas.py REASONS) a correct validator
gives it. Kinds a typed Parquet column can hold are applied to the Arrow rows; the rest
(`JSONL_ONLY`) are applied to the rendered JSON line and appear in JSON lines files only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshlake.synth import ids
from freshlake.synth.schemas import TIMESTAMP

JSONL_ONLY = ("malformed_json", "bad_type", "bad_timestamp")


@dataclass(frozen=True)
class RecordKind:
    """What faults a kind of record (impressions or actions) can carry."""

    name: str
    id_column: str
    time_column: str
    required: tuple[str, ...]
    typed_kinds: tuple[str, ...]
    bad_type_field: str
    bad_type_values: tuple[str, ...]
    id_space: int  # of the originals' ids (freshlake.synth.ids)
    malformed_id_space: int  # of the malformed copies' fresh ids

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.typed_kinds + JSONL_ONLY


IMPRESSIONS = RecordKind(
    name="impressions",
    id_column="impression_id",
    time_column="served_at",
    required=("impression_id", "user_id", "item_id", "served_at"),
    typed_kinds=("missing_field", "future_timestamp", "ancient_timestamp", "out_of_range"),
    bad_type_field="position",
    bad_type_values=("top", "first", "2nd"),
    id_space=ids.IMPRESSION,
    malformed_id_space=ids.MALFORMED_IMPRESSION,
)
ACTIONS = RecordKind(
    name="actions",
    id_column="action_id",
    time_column="action_at",
    required=("impression_id", "action", "action_at"),
    typed_kinds=("missing_field", "future_timestamp", "ancient_timestamp", "unknown_action"),
    bad_type_field="value",
    bad_type_values=("n/a", "lots", "12,50"),
    id_space=ids.ACTION,
    malformed_id_space=ids.ACTION,
)

DUPLICATE = 1  # fault code of an exact re-send; 0 is a well-formed original
FUTURE_START_MS = int(datetime(2099, 1, 1, tzinfo=UTC).timestamp() * 1000)
ANCIENT_STARTS_MS = (0, int(datetime(1999, 1, 1, tzinfo=UTC).timestamp() * 1000))  # + < 1 year
YEAR_MS = 365 * 86_400_000
OUT_OF_RANGE_CTR = (1.5, -0.2, 12.0)
UNKNOWN_ACTIONS = ("share", "hover", "dwell")
BAD_TIMESTAMPS = ("not-a-timestamp", "2026-13-45T25:61:00Z", "yesterday")
RESEND_DELAY_MS = (500, 300_000)


def fault_code(record: RecordKind, kind: str) -> int:
    """The code of a malformed kind in `FaultyLog.fault` (2, 3, ...)."""
    return 2 + record.kinds.index(kind)


@dataclass(frozen=True)
class FaultyLog:
    """Originals, duplicates and malformed copies (not yet in file order), with per row its
    fault code (0 original, 1 duplicate, else `fault_code`) and its place in the file."""

    record: RecordKind
    rows: pa.Table
    fault: np.ndarray
    order_key: np.ndarray

    def count(self, code: int) -> int:
        return int((self.fault == code).sum())

    def in_file_order(self, jsonl: bool) -> tuple[pa.Table, np.ndarray]:
        """Rows and fault codes as written: JSON lines get every row, Parquet all but the
        JSONL-only defects."""
        order = np.argsort(self.order_key, kind="stable")
        if not jsonl:
            jsonl_only = [fault_code(self.record, k) for k in JSONL_ONLY]
            order = order[~np.isin(self.fault[order], jsonl_only)]
        return self.rows.take(pa.array(order)), self.fault[order]


def _replace(table: pa.Table, name: str, rows: np.ndarray, values: pa.Array) -> pa.Table:
    """Column `name` with `rows` (a boolean mask) replaced by `values` (one per row)."""
    column = table.column(name).combine_chunks()
    index = table.schema.get_field_index(name)
    updated = pc.if_else(pa.array(rows), values, column)
    return table.set_column(index, table.schema.field(index), updated)


def _pick(rng: np.random.Generator, options: tuple, count: int, kind: pa.DataType) -> pa.Array:
    return pa.array([options[i] for i in rng.integers(0, len(options), count)], kind)


def _corrupt_typed(
    record: RecordKind, rows: pa.Table, kinds: np.ndarray, rng: np.random.Generator
) -> pa.Table:
    """Apply each row's typed defect (one per row) to copies of real records."""
    count = rows.num_rows
    is_kind = {kind: kinds == kind for kind in record.kinds}

    missing = is_kind["missing_field"]
    field = rng.integers(0, len(record.required), count)
    empty = rng.random(count) < 0.5  # an empty string, else the field left out
    for i, name in enumerate(record.required):
        chosen = missing & (field == i)
        kind = rows.schema.field(name).type
        blank = pa.array([""] * count) if kind == pa.string() else pa.nulls(count, kind)
        nulls = pa.nulls(count, kind)
        rows = _replace(rows, name, chosen, pc.if_else(pa.array(empty), blank, nulls))

    future = FUTURE_START_MS + rng.integers(0, YEAR_MS, count)
    ancient = np.array(ANCIENT_STARTS_MS)[rng.integers(0, 2, count)] + rng.integers(
        0, YEAR_MS, count
    )
    for kind, millis in (("future_timestamp", future), ("ancient_timestamp", ancient)):
        rows = _replace(rows, record.time_column, is_kind[kind], pa.array(millis * 1000, TIMESTAMP))
    if "out_of_range" in record.kinds:
        values = _pick(rng, OUT_OF_RANGE_CTR, count, pa.float64())
        rows = _replace(rows, "pred_ctr", is_kind["out_of_range"], values)
    if "unknown_action" in record.kinds:
        values = _pick(rng, UNKNOWN_ACTIONS, count, pa.string())
        rows = _replace(rows, "action", is_kind["unknown_action"], values)
    return rows


def _balanced_kinds(kinds: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` kind indices, each kind equally often (the remainder to random kinds), shuffled."""
    rounds, remainder = divmod(count, kinds)
    chosen = np.concatenate([np.tile(np.arange(kinds), rounds), rng.permutation(kinds)[:remainder]])
    return rng.permutation(chosen)


def inject_faults(
    record: RecordKind,
    table: pa.Table,
    times_ms: np.ndarray,
    duplicate_share: float,
    malformed_share: float,
    chunk: int,
    rng: np.random.Generator,
) -> FaultyLog:
    """Add duplicates and malformed copies, each placed near its source record's time."""
    rows = table.num_rows
    duplicates = np.sort(rng.choice(rows, size=round(rows * duplicate_share), replace=False))
    resend_ms = rng.integers(*RESEND_DELAY_MS, len(duplicates))
    count = round(rows * malformed_share) if rows else 0
    kinds = np.array(record.kinds)[_balanced_kinds(len(record.kinds), count, rng)]
    sources = rng.integers(0, rows, count)

    malformed = table.take(pa.array(sources, pa.int64()))
    space = record.malformed_id_space
    first = rows if space == record.id_space else 0  # the originals hold 0 .. rows - 1
    fresh = ids.hex_ids(ids.index_in_space(space, chunk, first + np.arange(count)))
    malformed = _replace(malformed, record.id_column, np.ones(count, dtype=bool), fresh)
    malformed = _corrupt_typed(record, malformed, kinds, rng)

    combined = pa.concat_tables([table, table.take(pa.array(duplicates, pa.int64())), malformed])
    keys = np.concatenate([times_ms, times_ms[duplicates] + resend_ms, times_ms[sources]])
    fault = np.concatenate(
        [
            np.zeros(rows, dtype=np.int8),
            np.full(len(duplicates), DUPLICATE, dtype=np.int8),
            np.array([fault_code(record, k) for k in kinds], dtype=np.int8),
        ]
    )
    return FaultyLog(record, combined, fault, keys)


def corrupt_json_line(record: RecordKind, kind: str, line: str, rng: np.random.Generator) -> str:
    """Apply a JSONL-only defect to one rendered line (ending in a newline)."""
    if kind == "malformed_json":  # a write cut short: any proper prefix of an object is bad
        body = line.rstrip("\n")
        return body[: int(rng.integers(1, len(body)))] + "\n"
    obj = json.loads(line)
    if kind == "bad_type":
        values = record.bad_type_values
        obj[record.bad_type_field] = values[int(rng.integers(0, len(values)))]
    elif kind == "bad_timestamp":
        obj[record.time_column] = BAD_TIMESTAMPS[int(rng.integers(0, len(BAD_TIMESTAMPS)))]
    else:
        raise ValueError(f"{kind!r} is not a JSON-lines-only defect")
    return json.dumps(obj, separators=(",", ":")) + "\n"


def corrupt_json_lines(
    record: RecordKind, lines: pa.StringArray, codes: np.ndarray, rng: np.random.Generator
) -> pa.StringArray:
    """Patch the JSONL-only defects into rendered lines, given each line's fault code."""
    mask = np.isin(codes, [fault_code(record, k) for k in JSONL_ONLY])
    if not mask.any():
        return lines
    where = np.flatnonzero(mask)
    originals = lines.take(pa.array(where)).to_pylist()
    patched = [
        corrupt_json_line(record, record.kinds[codes[i] - 2], line, rng)
        for i, line in zip(where, originals, strict=True)
    ]
    return pc.replace_with_mask(lines, pa.array(mask), pa.array(patched, pa.string()))
