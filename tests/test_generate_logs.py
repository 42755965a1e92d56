"""The synthetic log generator: contract 1 layout, determinism, statistics and fault counts.

Records are classified here by an independent reading of docs/design.md section 2.1, so the
manifest's counts are checked against what is really in the files.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from freshlake.config import GenerateConfig
from freshlake.synth import generate_logs, plan_chunks
from freshlake.synth.schemas import ACTIONS_SCHEMA, IMPRESSIONS_SCHEMA

WINDOW = 3600
SETTINGS = GenerateConfig(
    seed=11,
    impressions=60_000,
    users=5_000,
    items=3_000,
    days=2,
    duplicate_share=0.02,
    malformed_share=0.02,
    late_click_share=0.1,
    formats=["jsonl", "parquet"],
    workers=1,
)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2090, 1, 1, tzinfo=UTC)
REQUIRED = {
    "impressions": ("impression_id", "user_id", "item_id", "served_at"),
    "actions": ("impression_id", "action", "action_at"),
}
TIME_FIELD = {"impressions": "served_at", "actions": "action_at"}
ID_FIELD = {"impressions": "impression_id", "actions": "action_id"}


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("logs")
    return out, generate_logs(SETTINGS, out, window_seconds=WINDOW)


def _lines(out: Path, record: str) -> list[str]:
    files = sorted((out / record).glob("part-*.jsonl"))
    return [line for path in files for line in path.read_text().splitlines()]


def _parquet(out: Path, record: str) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((out / record).glob("*.parquet")))


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str) and value.endswith("Z"):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def classify(record: str, obj: dict) -> str:
    """'ok' or the quarantine reason a correct validator gives this record."""
    if any(obj.get(name) in (None, "") for name in REQUIRED[record]):
        return "missing_field"
    numeric = "position" if record == "impressions" else "value"
    if numeric in obj and obj[numeric] is not None and not _is_number(obj[numeric]):
        return "bad_type"
    if record == "impressions" and not isinstance(obj["position"], int):
        return "bad_type"
    when = obj[TIME_FIELD[record]]
    if not isinstance(when, datetime):
        when = _parse_time(when)
    if when is None:
        return "bad_timestamp"
    if when > LATEST:
        return "future_timestamp"
    if when < EARLIEST:
        return "ancient_timestamp"
    if record == "impressions" and not 0 <= obj["pred_ctr"] <= 1:
        return "out_of_range"
    if record == "actions" and obj["action"] not in ("click", "like", "conversion"):
        return "unknown_action"
    return "ok"


def classify_line(record: str, line: str) -> str:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return "malformed_json"
    return classify(record, obj) if isinstance(obj, dict) else "malformed_json"


def _ok_jsonl(out: Path, record: str) -> list[dict]:
    return [json.loads(line) for line in _lines(out, record) if classify_line(record, line) == "ok"]


def _ok_parquet(out: Path, record: str) -> list[dict]:
    return [row for row in _parquet(out, record).to_pylist() if classify(record, row) == "ok"]


@pytest.mark.parametrize("record", ["impressions", "actions"])
def test_jsonl_counts_reconcile_with_manifest(logs, record):
    out, manifest = logs
    stated = manifest["formats"]["jsonl"][record]
    kinds = Counter(classify_line(record, line) for line in _lines(out, record))
    ok = kinds.pop("ok")
    assert dict(kinds) == {k: v for k, v in stated["malformed"].items() if v}
    assert set(stated["malformed"]) >= set(kinds)
    assert all(count > 0 for count in stated["malformed"].values())
    assert ok == stated["valid"] == stated["records"] - stated["malformed_total"]
    unique = {row[ID_FIELD[record]] for row in _ok_jsonl(out, record)}
    assert ok - len(unique) == stated["duplicates"] > 0
    assert stated["files"] == [
        p.relative_to(out).as_posix() for p in sorted((out / record).glob("*.jsonl"))
    ]


@pytest.mark.parametrize("record", ["impressions", "actions"])
def test_parquet_counts_reconcile_with_manifest(logs, record):
    out, manifest = logs
    stated = manifest["formats"]["parquet"][record]
    kinds = Counter(classify(record, row) for row in _parquet(out, record).to_pylist())
    ok = kinds.pop("ok")
    assert dict(kinds) == {k: v for k, v in stated["malformed"].items() if v}
    assert not {"malformed_json", "bad_type", "bad_timestamp"} & set(stated["malformed"])
    assert ok == stated["valid"]
    assert (
        ok - len({row[ID_FIELD[record]] for row in _ok_parquet(out, record)})
        == (stated["duplicates"])
    )


def test_malformed_kinds_are_quarantine_reason_codes(logs):
    from freshlake.features.schemas import REASONS

    _, manifest = logs
    for fmt in manifest["formats"].values():
        for record in fmt.values():
            assert set(record["malformed"]) <= set(REASONS)


def test_well_formed_records_match_the_truth_in_both_formats(logs):
    out, manifest = logs
    truth = pq.read_table(out / "truth" / "impressions.parquet")
    truth_ids = set(truth.column("impression_id").to_pylist())
    assert len(truth_ids) == truth.num_rows == manifest["truth"]["impressions"]
    for rows in (_ok_jsonl(out, "impressions"), _ok_parquet(out, "impressions")):
        assert {r["impression_id"] for r in rows} == truth_ids
    for rows in (_ok_jsonl(out, "actions"), _ok_parquet(out, "actions")):
        unique = {r["action_id"]: r for r in rows}
        assert len(unique) == manifest["truth"]["actions_total"]
        assert {r["impression_id"] for r in unique.values()} <= truth_ids
        assert Counter(r["action"] for r in unique.values()) == manifest["truth"]["actions"]


def test_duplicates_are_exact_resends(logs):
    out, _ = logs
    for record in ("impressions", "actions"):
        lines = [ln for ln in _lines(out, record) if classify_line(record, ln) == "ok"]
        counts = Counter(lines)
        by_id = Counter(json.loads(ln)[ID_FIELD[record]] for ln in counts)
        assert max(counts.values()) >= 2
        assert max(by_id.values()) == 1  # a repeated id is always a byte-identical line


def test_record_contract(logs):
    out, _ = logs
    assert pq.read_schema(next((out / "impressions").glob("*.parquet"))) == IMPRESSIONS_SCHEMA
    assert pq.read_schema(next((out / "actions").glob("*.parquet"))) == ACTIONS_SCHEMA
    rows = _ok_jsonl(out, "impressions")
    for row in rows[:2000]:
        assert set(row) <= set(IMPRESSIONS_SCHEMA.names)
        assert {"impression_id", "request_id", "user_id", "item_id", "served_at"} <= set(row)
        assert isinstance(row["position"], int) and 0 <= row["pred_ctr"] <= 1
        assert set(row["features"]) <= {"device", "hour", "query"}
        assert row["features"]["hour"] == _parse_time(row["served_at"]).hour
        if row["surface"] == "search":
            assert row["features"]["query"].replace(" ", "").isalpha()
    assert sum(isinstance(r["served_at"], int) for r in rows) > 0  # epoch-ms variant present
    # requests: several impressions share request_id, user and time, positions 1..k
    requests: dict[str, list[dict]] = {}
    for row in {r["impression_id"]: r for r in rows}.values():
        requests.setdefault(row["request_id"], []).append(row)
    sizes = [len(v) for v in requests.values()]
    assert np.mean(sizes) > 2
    for shown in list(requests.values())[:500]:
        assert sorted(r["position"] for r in shown) == list(range(1, len(shown) + 1))
        assert len({(r["user_id"], _parse_time(r["served_at"])) for r in shown}) == 1


def test_chunks_cover_every_impression_once():
    settings = GenerateConfig(impressions=10_001, days=3, files_per_day=1, max_rows_per_file=1500)
    chunks = plan_chunks(settings)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert sum(c.rows for c in chunks) == 10_001
    assert all(c.rows <= 1500 for c in chunks)
    assert [c.first_row for c in chunks] == list(np.cumsum([0] + [c.rows for c in chunks[:-1]]))
    assert sorted({c.day for c in chunks}) == [0, 1, 2]


def test_same_seed_same_bytes_any_worker_count(tmp_path):
    settings = SETTINGS.model_copy(update={"impressions": 4_000, "days": 2, "files_per_day": 2})

    def snapshot(out: Path) -> dict[str, bytes]:
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.*")}

    generate_logs(settings, tmp_path / "a")
    generate_logs(settings.model_copy(update={"workers": 2}), tmp_path / "b")
    generate_logs(settings.model_copy(update={"seed": 12}), tmp_path / "c")
    generate_logs(settings.model_copy(update={"formats": ["parquet"]}), tmp_path / "d")
    a, b, c = snapshot(tmp_path / "a"), snapshot(tmp_path / "b"), snapshot(tmp_path / "c")
    assert len(a) == 2 * 2 * 4 + 3  # 4 chunks x 2 records x 2 formats, 2 truth, manifest
    assert a == b
    parquet_only = snapshot(tmp_path / "d")
    parquet_only.pop("manifest.json")
    assert parquet_only == {k: a[k] for k in parquet_only}  # the data do not depend on formats
    assert (
        a.keys() == c.keys()
        and a["impressions/part-00000.jsonl"] != c["impressions/part-00000.jsonl"]
    )


def test_ctr_matches_click_model(logs):
    out, manifest = logs
    truth = pq.read_table(out / "truth" / "impressions.parquet")
    clicked = truth.column("clicked").to_numpy(zero_copy_only=False)
    p = truth.column("p_click").to_numpy()
    assert 0.01 <= clicked.mean() <= 0.03
    # realised clicks follow p_click: within 4 standard deviations
    assert abs(clicked.sum() - p.sum()) < 4 * np.sqrt((p * (1 - p)).sum())
    assert abs(p.mean() - manifest["click_model"]["expected_ctr"]) < 0.25 * p.mean()
    position = truth.column("position").to_numpy()
    factor = manifest["click_model"]["position_factor"]
    top, lower = clicked[position == 1].mean(), clicked[position >= 4].mean()
    assert top > 1.5 * lower
    assert factor[0] > factor[3] > factor[-1]
    hour_factor = np.array(manifest["click_model"]["hour_factor"])
    hour = truth.column("hour").to_numpy()
    peak, trough = np.argsort(hour_factor)[-6:], np.argsort(hour_factor)[:6]
    assert clicked[np.isin(hour, peak)].mean() > clicked[np.isin(hour, trough)].mean()


def test_item_truth_and_popularity_shape(logs):
    out, _ = logs
    items = pq.read_table(out / "truth" / "items.parquet")
    assert items.num_rows == SETTINGS.items
    assert pc.sum(items.column("impressions")).as_py() == SETTINGS.impressions
    counts = np.sort(items.column("impressions").to_numpy())[::-1]
    # power law: the top 1% of items take a large share, and the tail is long
    assert counts[: SETTINGS.items // 100].sum() > 0.3 * counts.sum()
    assert (counts < 100).mean() > 0.8
    ranks = np.arange(1, 51)
    slope = np.polyfit(np.log(ranks), np.log(counts[:50]), 1)[0]
    assert abs(-slope - SETTINGS.popularity_exponent) < 0.25
    # per-item true CTR explains the clicks of the items with many impressions
    ctr = items.column("true_ctr").to_numpy()
    seen = items.column("impressions").to_numpy()
    clicks = items.column("clicks").to_numpy()
    head = seen >= 1000
    expected = ctr[head] * seen[head]
    assert abs(clicks[head].sum() - expected.sum()) < 4 * np.sqrt(expected.sum())
    assert np.corrcoef(clicks[head] / seen[head], ctr[head])[0, 1] > 0.8
    assert ctr.std() / ctr.mean() > 0.5  # items really differ
    # true_ctr is the marginal over the position/hour mix: p_click / true_ctr averages to 1
    truth = pq.read_table(out / "truth" / "impressions.parquet")
    by_item = dict(zip(items.column("item_id").to_pylist(), ctr, strict=True))
    item_ctr = np.array([by_item[i] for i in truth.column("item_id").to_pylist()])
    assert (truth.column("p_click").to_numpy() / item_ctr).mean() == pytest.approx(1, abs=0.02)
    default = GenerateConfig()
    popularity = items.column("popularity").to_numpy()
    assert (popularity * default.impressions < 100).mean() > 0.5  # rare items at default size


def test_late_clicks_and_labels_match_actions(logs):
    out, manifest = logs
    truth = pq.read_table(out / "truth" / "impressions.parquet").to_pylist()
    served = {
        r["impression_id"]: _parse_time(r["served_at"]) for r in _ok_jsonl(out, "impressions")
    }
    first: dict[str, float] = {}
    within: dict[str, set[str]] = {"click": set(), "like": set(), "conversion": set()}
    for action in {r["action_id"]: r for r in _ok_jsonl(out, "actions")}.values():
        delay = (_parse_time(action["action_at"]) - served[action["impression_id"]]).total_seconds()
        assert delay > 0
        if delay <= WINDOW:
            within[action["action"]].add(action["impression_id"])
        if action["action"] == "click":
            first[action["impression_id"]] = min(first.get(action["impression_id"], 1e18), delay)
    for row in truth:
        iid = row["impression_id"]
        assert row["clicked"] == (iid in within["click"])
        assert row["liked"] == (iid in within["like"])
        assert row["converted"] == (iid in within["conversion"])
        if row["first_click_delay_s"] is not None:
            assert row["first_click_delay_s"] == pytest.approx(first[iid], abs=0.002)
    late = manifest["truth"]["late_clicks"]
    ever = sum(r["first_click_delay_s"] is not None for r in truth)
    assert late == sum(d > WINDOW for d in first.values())
    assert abs(late / ever - SETTINGS.late_click_share) < 0.05
    assert manifest["truth"]["repeated_clicks"] > 0
    likes = [
        r
        for r in {r["action_id"]: r for r in _ok_jsonl(out, "actions")}.values()
        if r["action"] == "like"
    ]
    without_click = sum(r["impression_id"] not in first for r in likes)
    assert without_click == manifest["truth"]["likes_without_click"]
    assert 0 < without_click < 0.25 * len(likes)  # likes mostly follow a click


def test_cli_writes_logs_with_overrides(tmp_path, capsys):
    from freshlake.cli import run_module

    out = tmp_path / "cli"
    argv = ["--out", str(out), "--impressions", "3000", "--format", "parquet", "--seed", "5"]
    argv += ["--set", "generate.days=1", "--set", "generate.workers=1"]
    assert run_module("freshlake.jobs.generate_logs", argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["settings"]["days"] == 1
    assert manifest["truth"]["impressions"] == 3000
    assert list(manifest["formats"]) == ["parquet"]
    assert json.loads(capsys.readouterr().out)["impressions"] == 3000
    assert (
        run_module("freshlake.jobs.generate_logs", argv) == 2
    )  # refuses to mix with earlier output
    assert run_module("freshlake.jobs.generate_logs", [*argv, "--overwrite"]) == 0
