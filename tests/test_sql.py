"""`freshlake sql`: lake tables by name, table/CSV/JSON output, row limit, errors."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from freshlake.cli import run_module

ROWS = [
    ("imp-1", 1, 0.25, datetime(2026, 1, 1, 8, 30, 0, 123456, tzinfo=UTC), {"device": "ios"}),
    ("imp-2", 12, None, datetime(2026, 1, 2, 9, 0, tzinfo=UTC), None),
    ("imp-3", 3, 0.5, datetime(2026, 1, 2, 10, 0, tzinfo=UTC), {"device": "web"}),
]


@pytest.fixture
def sql(spark, config, lake, capsys):
    """Run `freshlake sql` in-process on a lake holding two small tables; return (rc, out, err)."""
    schema = "impression_id string, position int, pred_ctr double, served_at timestamp, features map<string,string>"
    lake.write("impressions", spark.createDataFrame(ROWS, schema))
    lake.write(
        "actions",
        spark.createDataFrame([("imp-2", "click")], "impression_id string, action string"),
    )

    def run(*argv: str) -> tuple[int, str, str]:
        rc = run_module("freshlake.jobs.sql", [*argv, "--set", f"lake.root={config.lake.root}"])
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    return run


def test_table_output_is_aligned_with_a_row_count(sql):
    rc, out, _ = sql(
        "SELECT impression_id, position, pred_ctr, features FROM impressions ORDER BY impression_id"
    )
    assert rc == 0
    lines = out.rstrip("\n").splitlines()
    header, rule, *body, footer = lines
    assert header.split(" | ")[0].strip() == "impression_id"
    assert set(rule) <= {"-", "+"} and len(rule) >= len(header)
    assert [len(line.split(" | ")) for line in body] == [4, 4, 4]
    cells = [[c.strip() for c in line.split(" | ")] for line in body]
    assert cells[1] == ["imp-2", "12", "NULL", "NULL"]
    assert cells[0][3] == '{"device": "ios"}'
    assert body[0].index("|") == header.index("|"), "columns line up"
    assert body[0].split(" | ")[1] == " 1".rjust(len(header.split(" | ")[1])), (
        "numbers right-aligned"
    )
    assert footer == "(3 rows)"


def test_tables_join_by_name_and_csv_is_parseable(sql):
    rc, out, _ = sql(
        "SELECT i.impression_id, a.action, i.served_at FROM impressions i "
        "JOIN actions a USING (impression_id)",
        "--format",
        "csv",
    )
    assert rc == 0
    assert list(csv.reader(io.StringIO(out))) == [
        ["impression_id", "action", "served_at"],
        ["imp-2", "click", "2026-01-02 09:00:00"],
    ]


def test_json_lines_keep_types_and_utc_times(sql):
    rc, out, _ = sql("SELECT * FROM impressions ORDER BY impression_id", "--format", "json")
    assert rc == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["impression_id"] for r in records] == ["imp-1", "imp-2", "imp-3"]
    assert records[0]["served_at"] == "2026-01-01 08:30:00.123456"
    assert records[0]["features"] == {"device": "ios"}
    assert records[1]["pred_ctr"] is None and records[1]["position"] == 12


def test_limit_cuts_and_says_so(sql):
    rc, out, err = sql("SELECT impression_id FROM impressions ORDER BY 1", "--limit", "2")
    assert rc == 0 and "more left out" in out.splitlines()[-1]
    assert len(out.splitlines()) == 2 + 2 + 1
    rc, out, err = sql(
        "SELECT impression_id FROM impressions ORDER BY 1", "--limit", "1", "--format", "csv"
    )
    assert out.splitlines() == ["impression_id", "imp-1"] and "--limit 1" in err


def test_bad_sql_is_a_clear_error(sql):
    rc, _, err = sql("SELECT nope FROM impressions")
    assert rc == 2 and "nope" in err
    rc, _, err = sql("SELECT * FROM no_such_table")
    assert rc == 2 and "no_such_table" in err
