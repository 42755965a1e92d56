"""File ingest into Delta: reconciliation, quarantine, idempotent re-runs, formats, CLI."""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import os
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from freshlake.cli import run_module
from freshlake.config import GenerateConfig
from freshlake.ingest.files import file_source, ingest_files
from freshlake.ingest.loader import ingest_sources
from freshlake.ingest.sources import (
    FIRST_LINE_LIMIT,
    _local_first_line,
    first_lines,
    list_input_files,
)
from freshlake.lake import Lake
from freshlake.synth import MANIFEST, generate_logs


def _impression(i: int, **fields) -> dict:
    return {
        "impression_id": f"imp-{i}",
        "request_id": f"req-{i // 3}",
        "user_id": f"user-{i % 4}",
        "item_id": f"item-{i % 5}",
        "served_at": f"2026-01-0{1 + i % 3}T0{i % 10}:00:00.000123Z",
        "position": 1 + i % 3,
        "surface": "home",
        "pred_ctr": 0.02,
        **fields,
    }


GOOD = [_impression(i) for i in range(9)]
BAD = {
    "missing_field": _impression(100, user_id=""),
    "bad_type": _impression(101, position="top"),
    "bad_timestamp": _impression(102, served_at="2026-01-01 noon"),
    "future_timestamp": _impression(103, served_at="2099-05-01T00:00:00Z"),
    "ancient_timestamp": _impression(104, served_at=86_400_000),
    "out_of_range": _impression(105, pred_ctr=3.5),
}
ACTION_LINES = [
    {"action_id": "a1", "impression_id": "imp-1", "action": "click", "action_at": 1767229200000},
    {"action_id": "a2", "impression_id": "imp-1", "action": "like", "action_at": 1767229260000},
    {"action_id": "a3", "impression_id": "imp-2", "action": "hover", "action_at": 1767229260000},
]


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def job_runs(lake: Lake, job: str) -> list:
    return lake.read("job_runs").where(f"job = '{job}'").orderBy("started_at").collect()


@pytest.fixture
def log_files(tmp_path) -> dict[str, Path]:
    impressions = [*GOOD, GOOD[0], *BAD.values(), '{"impression_id": "imp-cut', ""]
    return {
        "impressions": write_jsonl(tmp_path / "in" / "impressions.jsonl", impressions),
        "actions": write_jsonl(tmp_path / "in" / "actions.jsonl", ACTION_LINES),
    }


def test_ingest_reconciles_and_reingest_is_a_no_op(spark, config, lake, log_files):
    inputs = {kind: [str(path)] for kind, path in log_files.items()}
    summary = ingest_files(config, spark, inputs)

    lines = len(log_files["impressions"].read_text().splitlines())
    expected_reasons = Counter({reason: 1 for reason in BAD}) + Counter(malformed_json=2)
    assert summary.records("impressions") == lines == len(GOOD) + 1 + sum(expected_reasons.values())
    assert summary.valid("impressions") == len(GOOD) + 1, "the duplicate line is kept"
    assert summary.quarantined("impressions") == expected_reasons
    assert (summary.valid("actions"), summary.quarantined("actions")) == (2, {"unknown_action": 1})

    impressions = lake.read("impressions")
    assert impressions.count() == len(GOOD) + 1
    assert lake.partition_columns("impressions") == ["dt"]
    assert {r.dt.isoformat() for r in impressions.select("dt").distinct().collect()} == {
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
    }
    quarantine = lake.read("quarantine").collect()
    assert Counter((r.source, r.reason) for r in quarantine) == Counter(
        {("impressions", r): n for r, n in expected_reasons.items()}
        | {("actions", "unknown_action"): 1}
    )
    assert {r.run_id for r in quarantine} == {summary.run_id}
    assert all(r.source_file.endswith(".jsonl") for r in quarantine)

    (run,) = job_runs(lake, "ingest")
    assert run.status == "succeeded"
    assert run.counts["impressions.records"] == lines
    assert run.counts["impressions.valid"] + run.counts["impressions.quarantined"] == lines
    assert run.counts["impressions.quarantined.malformed_json"] == 2
    assert run.counts["actions.quarantined.unknown_action"] == 1
    assert run.output_versions == summary.versions

    versions = {t: lake.version(t) for t in ("impressions", "actions", "quarantine")}
    again = ingest_files(config, spark, inputs)
    assert all(o.skipped for o in again.outcomes)
    assert {t: lake.version(t) for t in versions} == versions
    assert lake.read("impressions").count() == len(GOOD) + 1
    assert job_runs(lake, "ingest")[-1].counts["sources.skipped"] == 2


def test_csv_and_parquet_take_the_same_path_as_jsonl(spark, config, lake, tmp_path):
    rows = [dict(_impression(i), features=json.dumps({"device": "ios"})) for i in range(4)]
    csv_path = tmp_path / "in" / "impressions.csv"
    csv_path.parent.mkdir(parents=True)
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        handle.write('imp-broken,"unterminated\n')
    typed = pa.table(
        {
            "impression_id": [f"pq-{i}" for i in range(3)] + ["pq-bad"],
            "user_id": ["u"] * 4,
            "item_id": ["item-1"] * 4,
            "served_at": pa.array(
                [datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)] * 3 + [None],
                pa.timestamp("us", tz="UTC"),
            ),
            "position": pa.array([1, 2, 3, 4], pa.int32()),
            "features": pa.array([[("device", "android")]] * 4, pa.map_(pa.string(), pa.string())),
            "campaign": ["c1"] * 4,
        }
    )
    parquet_path = tmp_path / "in" / "impressions.parquet"
    pq.write_table(typed, parquet_path)

    summary = ingest_files(config, spark, {"impressions": [str(csv_path), str(parquet_path)]})

    by_file = {o.source_file.rsplit(".", 1)[-1]: o for o in summary.outcomes}
    assert (by_file["csv"].valid, by_file["csv"].quarantined) == (4, {"malformed_row": 1})
    assert (by_file["parquet"].valid, by_file["parquet"].quarantined) == (3, {"missing_field": 1})
    stored = {r.impression_id: r for r in lake.read("impressions").collect()}
    assert stored["imp-2"].position == 3 and stored["imp-2"].features == {"device": "ios"}
    from_parquet = stored["pq-1"]
    assert from_parquet.served_at.microsecond == 678901, "microseconds survive to_json"
    assert from_parquet.features == {"device": "android"}
    assert from_parquet.extra == {"campaign": "c1"}


def test_more_rejected_records_than_remembered_are_all_found(
    spark, config, lake, log_files, monkeypatch
):
    """Past the hashes the valid pass remembers, the quarantine pass checks every record whose
    hash is at most the smallest remembered one: the rejected records are all found."""
    from freshlake.ingest import rejects

    impressions = log_files["impressions"]
    impressions.write_text(impressions.read_text() + "\n" + json.dumps(BAD["bad_type"]) + "\n")
    monkeypatch.setattr(rejects, "MAX_REMEMBERED_REJECTS", 3)
    summary = ingest_files(config, spark, {k: [str(p)] for k, p in log_files.items()})

    expected = Counter(dict.fromkeys(BAD, 1)) + Counter(malformed_json=3, bad_type=1)
    assert summary.quarantined("impressions") == expected, "repeated rejected lines, each counted"
    assert summary.valid("impressions") == len(GOOD) + 1
    assert summary.records("impressions") == len(impressions.read_text().splitlines())
    quarantine = lake.read("quarantine").where("source = 'impressions'")
    assert Counter(r.reason for r in quarantine.collect()) == expected
    assert lake.read("impressions").count() == len(GOOD) + 1


def test_a_write_that_reports_no_metrics_falls_back_to_checking_every_record(
    spark, config, lake, log_files, monkeypatch
):
    """When the valid write's observed metrics do not arrive, the run neither hangs nor loses a
    record: the quarantine pass checks every record and the counts are the same."""
    from freshlake.ingest import rejects

    pending = rejects.ValidPassCounts()
    assert not pending.arrived(seconds=0.1), "nothing ran: no metrics"
    monkeypatch.setattr(rejects.ValidPassCounts, "arrived", lambda self, seconds=0.0: False)
    summary = ingest_files(config, spark, {k: [str(p)] for k, p in log_files.items()})

    assert summary.quarantined("impressions") == Counter(dict.fromkeys(BAD, 1)) + Counter(
        malformed_json=2
    )
    assert summary.valid("impressions") == len(GOOD) + 1
    assert lake.read("impressions").count() == len(GOOD) + 1


class CrashBeforeQuarantine(Lake):
    """A lake whose quarantine commit fails, like a job killed between two tables' commits."""

    def write(self, table, df, **options):
        if table == "quarantine":
            raise RuntimeError("killed before the quarantine commit")
        return super().write(table, df, **options)


def test_crash_between_table_commits_is_repaired_by_a_rerun(spark, config, lake, log_files):
    sources = [
        file_source(spark, kind, file)
        for kind, path in log_files.items()
        for file in list_input_files(spark, [str(path)])
    ]
    run = dict(run_id="r", now=datetime.now(UTC))
    crashing = CrashBeforeQuarantine(config.lake, spark)
    with pytest.raises(RuntimeError, match="killed"):
        ingest_sources(crashing, config, sources, **run)
    assert lake.read("impressions").count() == len(GOOD) + 1
    assert not lake.exists("quarantine") and lake.read("actions").count() == 2

    impressions, actions = ingest_sources(lake, config, sources, **run)
    assert (impressions.skipped_tables, actions.skipped_tables) == (["impressions"], ["actions"])
    assert lake.read("impressions").count() == len(GOOD) + 1, "nothing written twice"
    assert lake.read("quarantine").count() == len(BAD) + 2 + 1
    assert lake.read("actions").count() == 2
    for outcome in (impressions, actions):
        assert outcome.records == outcome.valid + sum(outcome.quarantined.values())
    assert impressions.records == len(log_files["impressions"].read_text().splitlines())


TABLES = ("impressions", "actions", "quarantine")


def test_a_run_commits_once_per_table_with_an_app_transaction_per_file(
    spark, config, lake, tmp_path
):
    folder = tmp_path / "in"
    bad = list(BAD.values())
    for i in range(3):
        write_jsonl(folder / "impressions" / f"part-{i}.jsonl", [*GOOD[3 * i : 3 * i + 3], bad[i]])
        write_jsonl(folder / "actions" / f"part-{i}.jsonl", [ACTION_LINES[i]])
    inputs = {kind: [str(folder / kind)] for kind in ("impressions", "actions")}

    summary = ingest_files(config, spark, inputs)

    assert {t: lake.version(t) for t in TABLES} == dict.fromkeys(TABLES, 0)
    app_ids = {kind: [o.app_id for o in summary.outcomes if o.kind == kind] for kind in inputs}
    assert [len(ids) for ids in app_ids.values()] == [3, 3]
    every = app_ids["impressions"] + app_ids["actions"]
    for table, ids in (*app_ids.items(), ("quarantine", every)):
        assert lake.transaction_versions(table, every) == dict.fromkeys(ids, 1), table
    files = json.loads(lake.last_commit("impressions").metadata["source_files"])
    assert sorted(files) == sorted(o.source_file for o in summary.outcomes[:3])
    for i, outcome in enumerate(o for o in summary.outcomes if o.kind == "impressions"):
        assert (outcome.records, outcome.valid, outcome.quarantined) == (4, 3, {list(BAD)[i]: 1})
    assert lake.read("quarantine").count() == 3 + 1  # three bad impressions, one unknown action

    again = ingest_files(config, spark, inputs)
    assert all(o.skipped for o in again.outcomes)
    assert {t: lake.version(t) for t in TABLES} == dict.fromkeys(TABLES, 0)

    write_jsonl(folder / "impressions" / "part-3.jsonl", [_impression(50), bad[3]])
    third = ingest_files(config, spark, inputs)
    assert [o.source_file.rsplit("/", 1)[-1] for o in third.outcomes if not o.skipped] == [
        "part-3.jsonl"
    ]
    assert {t: lake.version(t) for t in TABLES} == {"impressions": 1, "actions": 0, "quarantine": 1}
    assert lake.read("impressions").count() == 9 + 1


def test_files_of_a_kind_are_read_in_one_scan_each_record_with_its_own_file_and_clock(
    spark, config, lake, tmp_path
):
    """Names with spaces, escapes, glob characters and non-ASCII letters; each record is judged
    against its own file's modification time and keeps its own file's path."""
    folder = tmp_path / "in" / "logs 100%25 #é"
    names = ["a b.jsonl", "x+y[1].jsonl", "{a,b}*?.jsonl", "plain.jsonl"]
    served = "2026-01-04T00:00:00Z"
    for i, name in enumerate(names):
        path = write_jsonl(
            folder / name, [*GOOD[2 * i : 2 * i + 2], _impression(60 + i, served_at=served)]
        )
        # The first two files were written on Jan 5, the others on Jan 3: before `served`.
        day = datetime(2026, 1, 5, tzinfo=UTC) if i < 2 else datetime(2026, 1, 3, 12, tzinfo=UTC)
        day = day.timestamp()
        os.utime(path, (day, day))

    summary = ingest_files(config, spark, {"impressions": [str(folder)]})

    by_name = {o.source_file.rsplit("/", 1)[-1]: o for o in summary.outcomes}
    assert sorted(by_name) == sorted(names)
    for i, name in enumerate(names):
        outcome = by_name[name]
        expected = {} if i < 2 else {"future_timestamp": 1}
        assert (outcome.records, outcome.quarantined) == (3, expected), name
        assert outcome.valid == 3 - len(expected)
    rows = lake.read("impressions").groupBy("source_file").count().collect()
    valid = {o.source_file: o.valid for o in summary.outcomes}
    assert {r.source_file: r["count"] for r in rows} == valid
    rejected = lake.read("quarantine").select("source_file").collect()
    assert sorted(r.source_file for r in rejected) == sorted(
        o.source_file for o in summary.outcomes if o.quarantined
    )


def test_parquet_files_are_read_in_one_scan_per_layout(spark, config, lake, tmp_path):
    """Files of the same columns and types share a scan (whatever their pandas metadata); a
    file with another column is read in a scan of its own; each record keeps its own file."""
    folder = tmp_path / "in"
    same = {"a.parquet": GOOD[0:3], "x[1] y.parquet": GOOD[3:6]}
    for name, records in same.items():
        _write_log(folder / name, records)
    with_campaign = [dict(r, campaign="c1") for r in [*GOOD[6:8], BAD["out_of_range"]]]
    _write_log(folder / "b.parquet", with_campaign)
    files = list_input_files(spark, [str(folder)])
    scans = {f.path.rsplit("/", 1)[-1]: file_source(spark, "impressions", f).scan for f in files}
    assert all(scan is not None for scan in scans.values())
    assert scans["a.parquet"].name == scans["x[1] y.parquet"].name != scans["b.parquet"].name

    summary = ingest_files(config, spark, {"impressions": [str(folder)]})

    by_name = {o.source_file.rsplit("/", 1)[-1]: o for o in summary.outcomes}
    assert {n: (o.records, o.valid) for n, o in by_name.items()} == {
        "a.parquet": (3, 3),
        "x[1] y.parquet": (3, 3),
        "b.parquet": (3, 2),
    }
    assert by_name["b.parquet"].quarantined == {"out_of_range": 1}
    rows = lake.read("impressions").collect()
    assert Counter(r.source_file.rsplit("/", 1)[-1] for r in rows) == {
        "a.parquet": 3,
        "x[1] y.parquet": 3,
        "b.parquet": 2,
    }
    assert {r.impression_id: r.extra for r in rows if r.extra} == {
        "imp-6": {"campaign": "c1"},
        "imp-7": {"campaign": "c1"},
    }


def test_csv_files_are_read_in_one_scan_per_header(spark, config, lake, tmp_path):
    """Files with the same header line share a scan (their headers read in one job); a file
    with its columns in another order is read in a scan of its own."""
    folder = tmp_path / "in"
    _write_log(folder / "a.csv", GOOD[0:3])
    _write_log(folder / "x[1] y.csv", [*GOOD[3:5], BAD["bad_type"]])
    _write_log(folder / "b.csv", [dict(reversed(r.items())) for r in GOOD[5:7]])
    files = list_input_files(spark, [str(folder)])
    headers = first_lines(spark, files)
    assert headers[files[0].path] == ",".join(GOOD[0])  # a.csv
    scans = {
        f.path.rsplit("/", 1)[-1]: file_source(spark, "impressions", f, headers[f.path]).scan
        for f in files
    }
    assert all(scan is not None for scan in scans.values())
    assert scans["a.csv"].name == scans["x[1] y.csv"].name != scans["b.csv"].name

    summary = ingest_files(config, spark, {"impressions": [str(folder)]})

    by_name = {o.source_file.rsplit("/", 1)[-1]: o for o in summary.outcomes}
    assert {n: (o.records, o.valid, o.quarantined) for n, o in by_name.items()} == {
        "a.csv": (3, 3, {}),
        "x[1] y.csv": (3, 2, {"bad_type": 1}),
        "b.csv": (2, 2, {}),
    }
    rows = lake.read("impressions").collect()
    assert Counter(r.source_file.rsplit("/", 1)[-1] for r in rows) == {
        "a.csv": 3,
        "x[1] y.csv": 2,
        "b.csv": 2,
    }
    assert {r.impression_id: r.position for r in rows} == {
        r["impression_id"]: r["position"] for r in GOOD[:7] if r["impression_id"] != "imp-101"
    }


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("lf.csv", b"a,b\nx,y\n", "a,b"),
        ("crlf.csv", b"a,b\r\nx,y\r\n", "a,b"),
        ("cr.csv", b"a,b\rx,y\r", "a,b"),
        ("no-line-end.csv", b"a,b", "a,b"),
        ("bom.csv", "\ufeffa,b\nx,y\n".encode(), "a,b"),
        ("bad-utf8.csv", b"a,\xff\nx,y\n", "a,\ufffd"),
        ("zipped.csv.gz", gzip.compress(b"a,b\nx,y\n"), "a,b"),
        ("zipped.csv.bz2", bz2.compress(b"a,b\nx,y\n"), "a,b"),
    ],
)
def test_first_lines_agree_with_spark_text_source(spark, tmp_path, name, content, expected):
    """A local file's first line is read by this process up to its first line end, as
    Spark's text source splits it (the job that reads every other file)."""
    path = tmp_path / name
    path.write_bytes(content)
    [file] = list_input_files(spark, [str(path)], "csv")
    assert _local_first_line(file) == expected
    first = spark.read.text(str(path)).limit(1).collect()
    assert (first[0].value if first else None) == expected
    assert first_lines(spark, [file]).get(file.path) == expected


def test_first_lines_leave_to_spark_what_this_process_cannot_read(spark, tmp_path):
    """A file changed since it was listed is left out; a first line longer than the limit, or a
    file in a codec the driver does not read, is read by the Spark job."""
    long_header = "a" * (FIRST_LINE_LIMIT + 10)
    long = tmp_path / "long.csv"
    long.write_text(long_header + "\nx\n")
    changed = tmp_path / "changed.csv"
    changed.write_text("a,b\n")
    [changed_file, long_file] = list_input_files(spark, [str(long), str(changed)], "csv")
    changed.write_text("a,b,c\n")
    os.utime(changed, (changed_file.modified_ms / 1000 + 5,) * 2)
    lz4_file = replace(long_file, path=long_file.path + ".lz4")

    assert _local_first_line(long_file) is None
    assert _local_first_line(changed_file) is None
    assert _local_first_line(lz4_file) is None
    assert first_lines(spark, [long_file, changed_file]) == {long_file.path: long_header}


def test_a_record_of_no_listed_source_fails_the_run_before_any_commit(
    spark, config, lake, tmp_path
):
    [file] = list_input_files(spark, [str(write_jsonl(tmp_path / "in" / "a.jsonl", GOOD[:2]))])
    source = file_source(spark, "impressions", file)
    assert source.scan is not None
    stray = replace(source, scan=replace(source.scan, key="file:/somewhere/else.jsonl"))

    with pytest.raises(Exception, match="a record of no listed source"):
        ingest_sources(lake, config, [stray], run_id="stray", now=datetime.now(UTC))
    assert lake.version("impressions") is None


def _write_log(path: Path, records: list[dict]) -> Path:
    """`records` as a JSONL, CSV (a header, nested values as JSON text) or Parquet file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        return write_jsonl(path, records)
    if path.suffix == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
        return path
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


@pytest.mark.parametrize("shared", [True, False], ids=["shared scan", "own read"])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_a_file_changed_since_it_was_listed_fails_the_run_before_any_commit(
    spark, config, lake, tmp_path, suffix, shared
):
    """A log still being written to: its records are not those of the listed identity."""
    path = _write_log(tmp_path / "in" / f"a{suffix}", GOOD[:2])
    [file] = list_input_files(spark, [str(path)])
    header = first_lines(spark, [file]).get(file.path)
    _write_log(path, GOOD[:3])
    os.utime(path, (file.modified_ms / 1000 + 5,) * 2)

    source = file_source(spark, "impressions", file, header)
    assert source.scan is not None
    if not shared:
        source = replace(source, scan=None)
    with pytest.raises(Exception, match="changed since it was listed"):
        ingest_sources(lake, config, [source], run_id="grown", now=datetime.now(UTC))
    assert lake.version("impressions") is None
    assert ingest_files(config, spark, {"impressions": [str(path)]}).valid("impressions") == 3


def test_directory_with_two_formats_needs_a_choice(spark, tmp_path):
    folder = tmp_path / "impressions"
    write_jsonl(folder / "part-00000.jsonl", GOOD)
    pq.write_table(pa.table({"impression_id": ["x"]}), folder / "part-00000.parquet")
    (folder / "_SUCCESS").write_text("")
    (folder / "README.md").write_text("not a log")
    with pytest.raises(ValueError, match="--format"):
        list_input_files(spark, [str(folder)])
    (chosen,) = list_input_files(spark, [str(folder)], "jsonl")
    assert chosen.path.endswith("part-00000.jsonl") and chosen.format == "jsonl"
    (named,) = list_input_files(spark, [str(folder / "*.parquet")])
    assert named.format == "parquet" and named.size > 0
    with pytest.raises(ValueError, match="cannot tell the format"):
        list_input_files(spark, [str(folder / "README.md")])
    with pytest.raises(FileNotFoundError):
        list_input_files(spark, [str(tmp_path / "nothing-here")])


def test_generated_logs_reconcile_with_their_manifest(spark, config, lake, tmp_path, capsys):
    settings = GenerateConfig(
        seed=5,
        impressions=4_000,
        users=300,
        items=200,
        days=2,
        duplicate_share=0.02,
        malformed_share=0.03,
        formats=["jsonl", "parquet"],
        workers=1,
    )
    out = tmp_path / "logs"
    generate_logs(settings, out)
    manifest = json.loads((out / MANIFEST).read_text())["formats"]["jsonl"]
    argv = ["--logs", str(out), "--set", f"lake.root={config.lake.root}"]

    assert run_module("freshlake.jobs.ingest", argv) == 2, (
        "both formats present: the user must choose"
    )
    assert "--format" in capsys.readouterr().err
    assert run_module("freshlake.jobs.ingest", [*argv, "--format", "jsonl"]) == 0
    printed = capsys.readouterr().out
    assert "impressions" in printed and "quarantine version" in printed

    (run,) = job_runs(lake, "ingest")
    for kind in ("impressions", "actions"):
        expected = manifest[kind]
        assert run.counts[f"{kind}.records"] == expected["records"]
        assert run.counts[f"{kind}.valid"] == expected["valid"]
        assert lake.read(kind).count() == expected["valid"], "duplicates are kept"
        quarantined = {
            r: run.counts.get(f"{kind}.quarantined.{r}", 0) for r in expected["malformed"]
        }
        assert quarantined == expected["malformed"]
        assert run.counts[f"{kind}.quarantined"] == expected["malformed_total"]
