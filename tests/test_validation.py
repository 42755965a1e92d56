"""Validation of raw JSON records: reason codes, timestamps, extra fields, laziness, streaming."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from freshlake.features.schemas import ACTION_SCHEMA, IMPRESSION_SCHEMA, QUARANTINE_SCHEMA, REASONS
from freshlake.features.validation import validate_actions, validate_impressions

CLOCK = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OK = {"user_id": "u1", "item_id": "item-7", "served_at": "2026-02-01T10:00:00Z"}


def impression(impression_id: str, **fields) -> str:
    return json.dumps({"impression_id": impression_id, **OK, **fields})


def action(action_id: str, **fields) -> str:
    base = {"impression_id": "i1", "action": "click", "action_at": "2026-02-01T10:00:05Z"}
    return json.dumps({"action_id": action_id, **base, **fields})


# impression id -> (raw record, expected reason or None for valid, field the detail names)
IMPRESSION_CASES: dict[str, tuple[str, str | None, str | None]] = {
    "iso-micros": (impression("iso-micros", served_at="2026-02-01T10:00:00.123456Z"), None, None),
    "iso-offset": (impression("iso-offset", served_at="2026-02-01T12:00:00+02:00"), None, None),
    "epoch-number": (impression("epoch-number", served_at=1769940000123), None, None),
    "epoch-string": (impression("epoch-string", served_at="1769940000123"), None, None),
    "extras": (
        impression("extras", features={"device": "ios", "hour": 9}, tag="x", nested={"k": [1]}),
        None,
        None,
    ),
    "missing-user": (
        json.dumps({"impression_id": "missing-user", "item_id": "a", "served_at": 1769940000000}),
        "missing_field",
        "user_id",
    ),
    "empty-item": (impression("empty-item", item_id=""), "missing_field", "item_id"),
    "null-served": (impression("null-served", served_at=None), "missing_field", "served_at"),
    "position-text": (impression("position-text", position="top"), "bad_type", "position"),
    "ctr-text": (impression("ctr-text", pred_ctr="high"), "bad_type", "pred_ctr"),
    "features-text": (impression("features-text", features="ios"), "bad_type", "features"),
    "ts-words": (impression("ts-words", served_at="yesterday"), "bad_timestamp", "served_at"),
    "ts-month-13": (
        impression("ts-month-13", served_at="2026-13-45T25:61:00Z"),
        "bad_timestamp",
        "served_at",
    ),
    "ts-future": (
        impression("ts-future", served_at="2026-03-01T13:00:01Z"),
        "future_timestamp",
        "served_at",
    ),
    "ts-near-future": (impression("ts-near-future", served_at="2026-03-01T12:59:59Z"), None, None),
    "ts-1999": (
        impression("ts-1999", served_at="1999-12-31T23:59:59Z"),
        "ancient_timestamp",
        "served_at",
    ),
    "ts-epoch-seconds": (
        impression("ts-epoch-seconds", served_at=1769940000),
        "ancient_timestamp",
        "served_at",
    ),
    "ctr-high": (impression("ctr-high", pred_ctr=1.5), "out_of_range", "pred_ctr"),
    "ctr-negative": (impression("ctr-negative", pred_ctr=-0.2), "out_of_range", "pred_ctr"),
    "position-zero": (impression("position-zero", position=0), "out_of_range", "position"),
}
GARBAGE = ['{"impression_id": "cut', "[1, 2]", "42", ""]


@pytest.fixture(scope="module")
def checked_impressions(spark):
    """Valid and quarantined rows of every impression case, collected once for the module."""
    from freshlake.config import load_config

    config = load_config("local.yaml")
    records = [raw for raw, _, _ in IMPRESSION_CASES.values()] + GARBAGE + [None]
    raw = spark.createDataFrame(
        [(r, f"s3://logs/f{i}.jsonl") for i, r in enumerate(records)],
        "value string, source_file string",
    )
    valid, quarantine = validate_impressions(raw, config, "run-1", now=CLOCK)
    return valid, {r.impression_id: r for r in valid.collect()}, quarantine.collect()


def _quarantined_by_id(rows) -> dict[str, object]:
    by_id = {}
    for row in rows:
        try:
            by_id[json.loads(row.raw)["impression_id"]] = row
        except (TypeError, ValueError):
            continue
    return by_id


@pytest.mark.parametrize("case", sorted(IMPRESSION_CASES))
def test_each_impression_case_gets_its_reason(checked_impressions, case):
    _, valid, quarantined = checked_impressions
    _, reason, field = IMPRESSION_CASES[case]
    rejected = _quarantined_by_id(quarantined)
    if reason is None:
        assert case in valid and case not in rejected
    else:
        assert case not in valid
        row = rejected[case]
        assert (row.reason, row.source) == (reason, "impressions")
        assert row.detail.startswith(f"{field}:"), row.detail
        assert json.loads(row.raw)["impression_id"] == case, "the raw payload is kept"


def test_unparseable_payloads_are_malformed_json_with_raw_kept(checked_impressions):
    _, _, quarantined = checked_impressions
    malformed = sorted((r.raw or "", r.detail) for r in quarantined if r.reason == "malformed_json")
    assert [raw for raw, _ in malformed] == sorted([*GARBAGE, ""])
    assert ("", "empty payload") in malformed  # the NULL value (e.g. a Kafka tombstone)


def test_every_record_is_either_valid_or_quarantined_once(checked_impressions):
    _, valid, quarantined = checked_impressions
    assert len(valid) + len(quarantined) == len(IMPRESSION_CASES) + len(GARBAGE) + 1
    assert {r.reason for r in quarantined} <= set(REASONS)
    assert {r.run_id for r in quarantined} == {"run-1"}
    assert all(r.source_file.startswith("s3://logs/") for r in quarantined)


def test_timestamps_are_utc_with_micro_precision(checked_impressions):
    _, valid, _ = checked_impressions
    to_utc = {k: r.served_at for k, r in valid.items()}
    assert valid["iso-micros"].served_at.microsecond == 123456
    assert to_utc["iso-offset"] == to_utc["extras"], "12:00+02:00 is 10:00Z"
    assert valid["epoch-number"].served_at.microsecond == 123000
    assert valid["epoch-number"].served_at == valid["epoch-string"].served_at
    assert {r.dt.isoformat() for r in valid.values()} == {"2026-02-01", "2026-03-01"}


def test_extra_fields_are_kept_not_rejected(checked_impressions):
    _, valid, _ = checked_impressions
    row = valid["extras"]
    assert row.extra == {"tag": "x", "nested": '{"k":[1]}'}
    assert row.features == {"device": "ios", "hour": "9"}
    assert valid["iso-micros"].extra is None


def test_output_columns_follow_the_table_contracts(checked_impressions, spark, config):
    valid, _, _ = checked_impressions
    assert valid.columns == IMPRESSION_SCHEMA.names
    assert [f.dataType for f in valid.schema] == [f.dataType for f in IMPRESSION_SCHEMA]
    raw = spark.createDataFrame([(action("a1"),)], "value string")
    actions, quarantine = validate_actions(raw, config, "run-1", now=CLOCK)
    assert actions.columns == ACTION_SCHEMA.names
    assert quarantine.columns == QUARANTINE_SCHEMA.names
    assert [f.dataType for f in quarantine.schema] == [f.dataType for f in QUARANTINE_SCHEMA]


def test_action_reasons(spark, config):
    records = {
        "ok": action("ok", value=12.5),
        "upper": action("upper", action="Like"),
        "share": action("share", action="share"),
        "no-action": action("no-action", action=None),
        "no-time": action("no-time", action_at=""),
        "value-text": action("value-text", value="lots"),
        "late-future": action("late-future", action_at="2099-01-01T00:00:00Z"),
    }
    raw = spark.createDataFrame(
        [(v, "kafka-topic", 3, i) for i, v in enumerate(records.values())],
        "value string, topic string, partition int, offset long",
    )
    valid, quarantine = validate_actions(raw, config, "run-2", now=CLOCK)
    kept = {r.action_id: r for r in valid.collect()}
    rejected = {json.loads(r.raw)["action_id"]: r for r in quarantine.collect()}
    assert set(kept) == {"ok", "upper"}
    assert kept["upper"].action == "like"
    assert kept["ok"].value == 12.5
    assert {k: r.reason for k, r in rejected.items()} == {
        "share": "unknown_action",
        "no-action": "missing_field",
        "no-time": "missing_field",
        "value-text": "bad_type",
        "late-future": "future_timestamp",
    }
    assert rejected["share"].detail.startswith("action:")
    assert {(r.topic, r.partition) for r in rejected.values()} == {("kafka-topic", 3)}
    assert sorted(r.offset for r in rejected.values()) == [2, 3, 4, 5, 6]


def test_validation_runs_no_spark_job(spark, config):
    raw = spark.createDataFrame([(impression("x"),)], "value string")
    tracker = spark.sparkContext.statusTracker()
    spark.sparkContext.setJobGroup("validation-is-lazy", "must stay empty")
    try:
        validate_impressions(raw, config, "run-3")
        validate_actions(raw, config, "run-3")
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    assert tracker.getJobIdsForGroup("validation-is-lazy") == []


def test_streaming_dataframe_is_validated_by_the_same_functions(spark, config, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.jsonl").write_text(impression("s1") + "\nnot json\n")
    stream = spark.readStream.text(str(source))
    valid, quarantine = validate_impressions(stream, config, "stream-run")
    assert valid.isStreaming and quarantine.isStreaming
    queries = [
        df.writeStream.format("memory")
        .queryName(name)
        .option("checkpointLocation", str(tmp_path / name))
        .trigger(availableNow=True)
        .start()
        for name, df in (("valid_stream", valid), ("quarantine_stream", quarantine))
    ]
    for query in queries:
        query.awaitTermination(120)
    assert [r.impression_id for r in spark.table("valid_stream").collect()] == ["s1"]
    assert [r.reason for r in spark.table("quarantine_stream").collect()] == ["malformed_json"]
