"""Log replay scheduling and the producer's JSON encoding (no broker needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from freshlake.streaming.producer import to_json
from freshlake.streaming.replay import LogRecord, _record, event_millis, load_logs, schedule


def _imp(impression_id: str, served_at: str) -> LogRecord:
    payload = json.dumps({"impression_id": impression_id, "served_at": served_at}).encode()
    return _record("impressions", payload)


def _act(impression_id: str, action_at) -> LogRecord:
    payload = json.dumps(
        {"impression_id": impression_id, "action": "click", "action_at": action_at}
    )
    return _record("actions", payload.encode())


def test_event_millis_accepts_iso_epoch_and_datetimes():
    assert event_millis("1970-01-01T00:00:01Z") == 1000
    assert event_millis(1767225600000) == 1767225600000
    assert event_millis("1767225600000") == 1767225600000
    assert event_millis(datetime(1970, 1, 1, 0, 0, 2, tzinfo=UTC)) == 2000
    assert event_millis("yesterday") is None and event_millis(None) is None


def test_original_timing_sends_in_event_order_and_keeps_malformed_in_place():
    imps = [_imp("b", "2026-01-01T00:00:10Z"), _imp("a", "2026-01-01T00:00:00Z")]
    broken = _record("impressions", b"{not json")
    acts = [_act("a", "2026-01-01T00:00:05Z")]
    sends = schedule([*imps, broken], acts, rate=10, timing="original")
    order = [(s.record.record or {}).get("impression_id", "?") for s in sorted(sends)]
    # the broken line stays right behind the record before it in the file (a)
    assert order == ["a", "?", "a", "b"]
    assert [round(s.at, 3) for s in sorted(sends)] == [0.0, 0.1, 0.2, 0.3]
    assert broken.payload == b"{not json"


def test_live_timing_delays_actions_by_their_logged_delay_over_compression():
    imps = [_imp("a", "2026-01-01T00:00:00Z"), _imp("b", "2026-01-01T00:01:00Z")]
    acts = [_act("a", "2026-01-01T00:10:00Z")]  # 600 s after its impression
    sends = {(s.record.kind, s.record.key): s.at for s in schedule(imps, acts, 3, "live", 60)}
    assert sends[("impressions", b"a")] == 0.0
    assert sends[("actions", b"a")] == 10.0  # 600 s / 60


def test_load_logs_reads_a_generated_folder_and_limits_by_impressions(tmp_path):
    (tmp_path / "impressions").mkdir()
    (tmp_path / "actions").mkdir()
    (tmp_path / "impressions" / "part-00000.jsonl").write_text(
        "\n".join(
            to_json({"impression_id": i, "served_at": f"2026-01-01T00:00:0{n}Z"}).decode()
            for n, i in enumerate("xyz")
        )
        + "\n"
    )
    (tmp_path / "actions" / "part-00000.jsonl").write_text(
        to_json({"impression_id": "z", "action": "click", "action_at": 1767225610000}).decode()
        + "\n"
    )
    impressions, actions = load_logs(tmp_path)
    assert [r.record["impression_id"] for r in impressions] == ["x", "y", "z"]
    assert actions[0].event_ms == 1767225610000
    impressions, actions = load_logs(tmp_path, limit=2)
    assert len(impressions) == 2 and actions == []


def test_to_json_writes_utc_iso_timestamps():
    text = to_json({"t": datetime(2026, 1, 1, 12, tzinfo=UTC), "n": 1}).decode()
    assert json.loads(text) == {"t": "2026-01-01T12:00:00.000000Z", "n": 1}


def test_load_logs_reads_the_lake_tables_as_logged_records(spark, lake):
    from freshlake.features.schemas import ACTION_SCHEMA, IMPRESSION_SCHEMA

    served = datetime(2026, 1, 1, 8, tzinfo=UTC)
    impression = {
        "impression_id": "imp-1", "user_id": "u-1", "item_id": "item-1", "served_at": served,
        "position": 2, "features": {"device": "ios"}, "extra": {"ab_bucket": "b"},
        "source_file": "part-0.jsonl", "ingest_run_id": "run-1", "dt": served.date(),
    }  # fmt: skip
    action = {
        "impression_id": "imp-1", "action": "click", "action_at": served.replace(second=30),
        "extra": None, "source_file": "part-0.jsonl", "ingest_run_id": "run-1",
        "dt": served.date(),
    }  # fmt: skip
    lake.write("impressions", spark.createDataFrame([impression], IMPRESSION_SCHEMA))
    lake.write("actions", spark.createDataFrame([action], ACTION_SCHEMA))

    impressions, actions = load_logs(None, lake)

    assert [r.record for r in impressions] == [
        {
            "impression_id": "imp-1",
            "user_id": "u-1",
            "item_id": "item-1",
            "served_at": "2026-01-01T08:00:00.000000Z",
            "position": 2,
            "features": {"device": "ios"},
            "ab_bucket": "b",
        }
    ]
    assert actions[0].record["action"] == "click"
    assert actions[0].event_ms == event_millis(served) + 30_000
