"""Validation is total: any bytes in, each record valid or quarantined with a reason, no error.

Property-based (hypothesis): hostile records go through the real read path of each format
(JSONL and CSV files, Parquet files whose columns have the wrong types, Kafka messages in the
bronze path's shape) and the real validation. Each example is one DataFrame of many records and
one Spark job, so the fast suite stays fast; the slow tests run many more examples.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from freshlake.features.schemas import REASONS
from freshlake.features.validation import (
    DETAIL,
    IMPRESSIONS,
    REASON,
    check_records,
    run_clock,
)

CLOCK = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VALID = {
    "impression_id": "imp-1",
    "request_id": "req-1",
    "user_id": "u1",
    "item_id": "item-7",
    "served_at": "2026-02-01T10:00:00Z",
    "position": 2,
    "surface": "home_feed",
    "region": "us-east",
    "model_version": "m1",
    "pred_ctr": 0.02,
    "features": {"device": "ios", "hour": 9},
}
FAST = settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
SLOW = settings(
    max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)

# Text that breaks naive number handling: overflow, specials, exponents, odd notations.
NUMERIC_TEXT = [
    "1e400",
    "-1e400",
    "1e-400",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "+INF",
    "99999999999999999999999",
    "-9223372036854775809",
    "2147483648",
    "1.5e3",
    "0x10",
    "1_000",
    " 3 ",
    "+7",
    "١٢",
    "",
    " ",
    "-0",
    "1e10",
    "253402300800000",
    "-253402300799999",
]
# Raw JSON number tokens spliced into a record as they are (not as strings).
NUMBER_TOKENS = ["1e400", "-1e400", "123456789012345678901234567890", "NaN", "Infinity", "-0.0"]
BIG_TEXT = "x" * 2_000_000

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(NUMERIC_TEXT),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def json_records(draw) -> bytes:
    """A record built from a valid impression with some fields hostile, then maybe mangled."""
    record = dict(VALID)
    for name in draw(st.lists(st.sampled_from([*VALID, "extra_1", "Position"]), max_size=5)):
        record[name] = draw(json_values)
    if draw(st.booleans()):
        record.pop(draw(st.sampled_from(list(VALID))), None)
    text = json.dumps(record, allow_nan=True)
    splice = draw(
        st.sampled_from(
            [
                None,
                f'"position": {draw(st.sampled_from(NUMBER_TOKENS))}',
                f'"pred_ctr": {draw(st.sampled_from(NUMBER_TOKENS))}',
                '"user_id": "dup"',
                f'"deep": {_deep(draw(st.sampled_from([3, 900, 3000])))}',
                '"surface": "nul\\u0000inside"',
                '"features": {"device": "a", "device": "b"}',
            ]
        )
    )
    if splice:
        text = text[:-1] + ", " + splice + "}"
    data = text.encode()
    mangle = draw(
        st.sampled_from(
            ["none", "none", "bom", "nul", "bad-utf8", "truncate", "crlf-inside", "big"]
        )
    )
    if mangle == "bom":
        data = "\ufeff".encode() + data
    elif mangle == "nul":
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + b"\x00" + data[cut:]
    elif mangle == "bad-utf8":
        cut = draw(st.integers(0, len(data)))
        data = (
            data[:cut]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xfe\xfe"]))
            + data[cut:]
        )
    elif mangle == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif mangle == "big":
        data = data[:-1] + b', "surface": "' + BIG_TEXT.encode() + b'"}'
    return data


other_payloads = st.one_of(
    st.sampled_from(
        [b"", b"   ", b"null", b"42", b'"text"', b"[1, 2]", b"[{}]", b"{}", b"{", b"}"]
    ),
    st.binary(max_size=60),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
)
payloads = st.one_of(json_records(), json_records(), other_payloads)


def _line(payload: bytes) -> bytes:
    """A payload as one JSONL line: line breaks inside it would make it several records."""
    return payload.replace(b"\r", b" ").replace(b"\n", b" ")


def _assert_total(spark, config, raw, expected: int) -> list:
    """Every record of `raw` is valid or quarantined with a known reason; the rejected rows.

    One Spark job: the checked records themselves (typed fields, reason, detail, raw payload).
    """
    checked = check_records(raw, IMPRESSIONS, config, run_clock(CLOCK))
    # As text: a rejected epoch time may lie before year 1, which Python's datetime cannot hold.
    rows = checked.withColumn("_v_served_at", F.col("_v_served_at").cast("string")).collect()
    assert len(rows) == expected, "every record in, exactly one row out"
    valid = [r for r in rows if r[REASON] is None]
    rejected = [r for r in rows if r[REASON] is not None]
    assert {r[REASON] for r in rejected} <= set(REASONS)
    for row in valid:  # what the valid table receives honours the contract
        assert row._v_impression_id.strip() and row._v_user_id.strip() and row._v_item_id.strip()
        assert row._v_served_at is not None
        assert row._v_position is None or row._v_position >= 1
        assert row._v_pred_ctr is None or 0 <= row._v_pred_ctr <= 1
        assert row.value is None, "the raw payload is kept for rejected records only"
    for row in rejected:
        assert row[DETAIL], row
        if row.value is not None:
            row.value.encode("utf-8")  # what the quarantine keeps is valid text
    return rejected


def _jsonl_file(tmp: Path, records: list[bytes]) -> Path:
    path = tmp / "part.jsonl"
    path.write_bytes(
        b"".join(_line(r) + (b"\r\n" if i % 2 else b"\n") for i, r in enumerate(records))
    )
    return path


def _input_file(path: Path, fmt: str):
    from freshlake.ingest.sources import InputFile

    stat = path.stat()
    return InputFile(f"file:{path}", stat.st_size, stat.st_mtime_ns // 1_000_000, fmt)


def _check_jsonl(spark, config, tmp_path_factory, records):
    from freshlake.ingest.sources import read_raw_records

    path = _jsonl_file(tmp_path_factory.mktemp("jsonl"), records)
    _assert_total(spark, config, read_raw_records(spark, _input_file(path, "jsonl")), len(records))


@FAST
@given(records=st.lists(payloads, min_size=20, max_size=40))
def test_jsonl_file_of_hostile_records(spark, config, tmp_path_factory, records):
    _check_jsonl(spark, config, tmp_path_factory, records)


@pytest.mark.slow
@SLOW
@given(records=st.lists(payloads, min_size=50, max_size=200))
def test_jsonl_file_of_hostile_records_many(spark, config, tmp_path_factory, records):
    _check_jsonl(spark, config, tmp_path_factory, records)


def test_pristine_records_stay_valid_beside_hostile_ones(spark, config, tmp_path):
    """One overflowing position no longer fails the file: its neighbours are written."""
    from freshlake.ingest.sources import read_raw_records

    good = [json.dumps({**VALID, "impression_id": f"ok-{i}"}).encode() for i in range(5)]
    bad = [json.dumps({**VALID, "position": "1e400"}).encode(), b'{"position": 1e400}']
    path = _jsonl_file(tmp_path, [*good, *bad])
    rejected = _assert_total(spark, config, read_raw_records(spark, _input_file(path, "jsonl")), 7)
    assert sorted(r[REASON] for r in rejected) == ["bad_type", "missing_field"]


csv_cells = st.one_of(
    st.sampled_from(NUMERIC_TEXT),
    st.text(max_size=20).map(lambda s: s.replace("\r", " ").replace("\n", " ")),
    st.sampled_from(["2026-02-01T10:00:00Z", "1769940000123", "u1", "item-7", '{"device": "ios"}']),
)


@st.composite
def csv_files(draw) -> tuple[bytes, int]:
    """A CSV file (header + rows, some rows broken) and its number of records.

    A header may repeat a name in another case (`Position`): Spark resolves CSV columns
    ignoring case, so every line of such a file is quarantined.
    """
    extras = ["extra", "a.b", "we`ird", "Position", "SURFACE"]
    names = [*VALID, *draw(st.lists(st.sampled_from(extras), max_size=2, unique=True))]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if draw(st.booleans()) else "\n")
    writer.writerow(names)
    rows = draw(
        st.lists(
            st.lists(csv_cells, min_size=len(names), max_size=len(names)), min_size=5, max_size=25
        )
    )
    for row in rows:
        writer.writerow(row)
    broken = draw(
        st.lists(st.sampled_from(["a,b", '"unclosed,x', ",,,,,,,,,,,,,,,,,,,", "\x00"]), max_size=4)
    )
    data = out.getvalue() + "".join(line + "\n" for line in broken)
    prefix = "\ufeff" if draw(st.booleans()) else ""
    return (prefix + data).encode(), len(rows) + len(broken)


def _check_csv(spark, config, tmp_path_factory, file):
    from freshlake.ingest.sources import read_raw_records

    data, expected = file
    path = tmp_path_factory.mktemp("csv") / "part.csv"
    path.write_bytes(data)
    _assert_total(spark, config, read_raw_records(spark, _input_file(path, "csv")), expected)


@FAST
@given(file=csv_files())
def test_csv_file_of_hostile_rows(spark, config, tmp_path_factory, file):
    _check_csv(spark, config, tmp_path_factory, file)


@pytest.mark.slow
@SLOW
@given(file=csv_files())
def test_csv_file_of_hostile_rows_many(spark, config, tmp_path_factory, file):
    _check_csv(spark, config, tmp_path_factory, file)


# Arrow columns of the wrong type (or the right one) for a contract field.
ARROW_COLUMNS = {
    "string": (
        pa.string(),
        st.one_of(st.none(), st.text(max_size=12), st.sampled_from(NUMERIC_TEXT)),
    ),
    "int64": (pa.int64(), st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))),
    "float64": (pa.float64(), st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))),
    "bool": (pa.bool_(), st.one_of(st.none(), st.booleans())),
    "binary": (pa.binary(), st.one_of(st.none(), st.binary(max_size=10))),
    "list": (pa.list_(pa.int32()), st.one_of(st.none(), st.lists(st.integers(-5, 5), max_size=3))),
    "struct": (
        pa.struct([("device", pa.string()), ("hour", pa.float64())]),
        st.one_of(
            st.none(), st.fixed_dictionaries({"device": st.text(max_size=5), "hour": st.floats()})
        ),
    ),
    "map": (
        pa.map_(pa.string(), pa.int64()),
        st.one_of(
            st.none(),
            st.dictionaries(st.text(max_size=4), st.integers(-9, 9), max_size=3).map(
                lambda d: list(d.items())
            ),
        ),
    ),
    "timestamp": (
        pa.timestamp("us", tz="UTC"),
        st.one_of(
            st.none(),
            st.datetimes(
                min_value=datetime(1, 1, 2),
                max_value=datetime(9999, 12, 30),
                timezones=st.just(UTC),
            ),
        ),
    ),
    "decimal": (
        pa.decimal128(38, 4),
        st.one_of(
            st.none(), st.decimals(min_value=-(10**30), max_value=10**30, places=4, allow_nan=False)
        ),
    ),
}


@st.composite
def parquet_tables(draw) -> pa.Table:
    """A table with the contract's column names (some missing, some extra) of arbitrary types."""
    rows = draw(st.integers(5, 30))
    names = [n for n in VALID if draw(st.integers(0, 5))] + draw(
        st.lists(st.sampled_from(["extra", "a.b", "we`ird"]), max_size=2, unique=True)
    )
    columns = {}
    for name in names:
        kind = draw(st.sampled_from(sorted(ARROW_COLUMNS)))
        arrow_type, values = ARROW_COLUMNS[kind]
        data = draw(st.lists(values, min_size=rows, max_size=rows))
        if kind == "decimal":
            data = [None if v is None else Decimal(v) for v in data]
        columns[name] = pa.array(data, type=arrow_type)
    return pa.table(columns) if columns else pa.table({"empty": pa.nulls(rows, pa.int32())})


def _check_parquet(spark, config, tmp_path_factory, table):
    from freshlake.ingest.sources import read_raw_records

    path = tmp_path_factory.mktemp("parquet") / "part.parquet"
    pq.write_table(table, path)
    raw = read_raw_records(spark, _input_file(path, "parquet"))
    _assert_total(spark, config, raw, table.num_rows)


@FAST
@given(table=parquet_tables())
def test_parquet_file_with_wrong_types(spark, config, tmp_path_factory, table):
    _check_parquet(spark, config, tmp_path_factory, table)


@pytest.mark.slow
@SLOW
@given(table=parquet_tables())
def test_parquet_file_with_wrong_types_many(spark, config, tmp_path_factory, table):
    _check_parquet(spark, config, tmp_path_factory, table)


def _check_kafka(spark, config, messages):
    from freshlake.streaming.bronze import raw_records

    rows = [
        (None if m is None else bytearray(m), "impressions", i % 3, 1000 + i)
        for i, m in enumerate(messages)
    ]
    frame = spark.createDataFrame(rows, "value binary, topic string, partition int, offset long")
    rejected = _assert_total(spark, config, raw_records(frame), len(messages))
    coordinates = {(r.topic, r.partition, r.offset) for r in rejected}
    assert len(coordinates) == len(rejected), "each quarantined message keeps its own offset"
    assert all(t == "impressions" and 0 <= p < 3 and o >= 1000 for t, p, o in coordinates)


@FAST
@given(messages=st.lists(st.one_of(st.none(), payloads), min_size=20, max_size=40))
def test_kafka_messages_of_hostile_bytes(spark, config, messages):
    _check_kafka(spark, config, messages)


@pytest.mark.slow
@SLOW
@given(messages=st.lists(st.one_of(st.none(), payloads), min_size=50, max_size=200))
def test_kafka_messages_of_hostile_bytes_many(spark, config, messages):
    _check_kafka(spark, config, messages)


def test_hostile_file_ingests_into_delta_and_reconciles(spark, config, tmp_path):
    """The whole ingest (both tables' Delta commits) over a file of hostile records."""
    from freshlake.ingest.files import ingest_files

    records = [json.dumps({**VALID, "impression_id": f"ok-{i}"}).encode() for i in range(3)] + [
        json.dumps({**VALID, "position": "1e400"}).encode(),
        json.dumps({**VALID, "pred_ctr": "NaN"}).encode(),
        b'{"impression_id": "x", "position": 1e400, "user_id": "u", "item_id": "i"}',
        "\ufeff".encode() + json.dumps({**VALID, "impression_id": "bom"}).encode(),
        json.dumps({**VALID, "surface": BIG_TEXT}).encode(),
        json.dumps({**VALID, "surface": "a\x00b"}).encode(),
        b'{"impression_id": "bad \xff utf8"}',
        b'{"impression_id": "d", "impression_id": "e"}',
        b'{"deep": ' + _deep(5000).encode() + b"}",
        b"[1, 2]",
        b"null",
        b"",
    ]
    path = _jsonl_file(tmp_path, records)
    summary = ingest_files(config, spark, {"impressions": [str(path)]})
    assert summary.records("impressions") == len(records)
    assert summary.valid("impressions") == 6
    assert summary.quarantined("impressions") == Counter(
        {
            "malformed_json": 5,
            "bad_type": 1,
            "out_of_range": 1,
            "missing_field": 1,
            "malformed_row": 1,
        }
    )


def test_csv_header_repeating_a_name_in_another_case_quarantines_its_lines(spark, config, tmp_path):
    """Spark resolves `position` and `Position` as one column: each line is quarantined with
    the reason instead of the file failing the run."""
    from freshlake.ingest.sources import read_raw_records

    header = ",".join([*VALID, "Position"])
    line = ",".join([*(str(v) for v in VALID.values()), "7"])
    path = tmp_path / "part.csv"
    path.write_text(f"{header}\n{line}\n{line}\n")
    raw = read_raw_records(spark, _input_file(path, "csv"))
    rejected = _assert_total(spark, config, raw, 2)
    assert [r[REASON] for r in rejected] == ["malformed_row", "malformed_row"]
    assert "repeats column names: Position, position" in rejected[0][DETAIL]
