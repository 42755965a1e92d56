"""Crash recovery: the joiner killed with SIGKILL mid-stream loses nothing and duplicates nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable

from freshlake.config import GenerateConfig, build_config
from freshlake.lake import read_table_arrow
from freshlake.streaming.producer import EventLogger, ensure_topics
from freshlake.streaming.queries import metrics_log_path
from freshlake.streaming.replay import event_millis, load_logs, replay
from freshlake.synth import generate_logs

REPO = Path(__file__).resolve().parent.parent


def _config_file(stream_config, tmp_path: Path):
    tree = stream_config.model_dump(mode="json")
    tree["sampling"]["negative_rate"] = 1.0  # keep every impression: each must appear once
    tree["sampling"]["rare_item"]["boost"] = 1.0
    tree["quality"]["imputation"] = {"hour": 12}
    tree["streaming"].update(
        {"max_offsets_per_trigger": 400, "trigger_seconds": 1.0, "watermark_delay_seconds": 600}
    )
    path = tmp_path / "crash.yaml"
    path.write_text(yaml.safe_dump(tree))
    return build_config(tree), path


def _start_joiner(config_path: Path, *extra: str) -> subprocess.Popen:
    """The joiner in its own process group (Python driver and its JVM), as `python -m`."""
    command = [
        sys.executable,
        "-m",
        "freshlake.streaming.join_cli",
        "--config",
        str(config_path),
        *extra,
    ]
    return subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL)


def _kill_after_commits(process: subprocess.Popen, table: Path, commits: int) -> None:
    """SIGKILL the joiner's process group once `table` has `commits` more versions."""

    def version() -> int:
        return DeltaTable(str(table)).version() if (table / "_delta_log").exists() else -1

    target = version() + commits
    deadline = time.monotonic() + 600
    while version() < target:
        assert process.poll() is None, "the joiner exited before it was killed"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(60) == -signal.SIGKILL


def _metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _expected_labels(logs: Path, labels) -> dict[str, dict]:
    """Per valid impression: served_at and its label per action, by docs/design.md section 3.1."""
    impressions, actions = load_logs(logs)
    served = {}
    for record in impressions:
        if record.record and record.event_ms is not None:
            served.setdefault(record.record["impression_id"], record.event_ms)
    expected = {i: {"served_ms": ms, "labels": set()} for i, ms in served.items()}
    lower, upper = labels.clock_skew_seconds * 1000, labels.attribution_window_seconds * 1000
    for record in actions:
        row = record.record or {}
        target = expected.get(row.get("impression_id"))
        if (
            target
            and record.event_ms is not None
            and target["served_ms"] - lower <= record.event_ms <= target["served_ms"] + upper
        ):
            target["labels"].add(row.get("action"))
    return expected


@pytest.mark.slow
def test_sigkill_twice_loses_and_duplicates_nothing(stream_config, tmp_path):
    config, config_path = _config_file(stream_config, tmp_path)
    logs = tmp_path / "logs"
    settings = GenerateConfig(impressions=1500, users=300, items=100, days=1, seed=11, workers=1)
    generate_logs(settings, logs, window_seconds=config.labels.attribution_window_seconds)

    ensure_topics(config.kafka, config.kafka.topics.values())
    logger = EventLogger(config.kafka)
    impressions, actions = load_logs(logs)
    replay(logger, impressions, actions, rate=50_000)
    logger.flush()

    table = Path(config.lake.root) / "fresh_examples"
    first = _start_joiner(config_path)
    _kill_after_commits(first, table, commits=1)
    second = _start_joiner(config_path)
    _kill_after_commits(second, table, commits=2)
    # The last run stops cleanly (SIGTERM) once the heartbeat's watermark closed every window.
    final = _start_joiner(config_path)
    # Live traffic resumes: heartbeats three hours after the last impression, on both topics,
    # move the watermark past every window (after a restart Spark restores only the global
    # watermark and moves it again once each of its inputs has new data).
    # The logs hold injected faults with served_at in 2099: validation quarantines those, so
    # the heartbeats follow the last impression the joiner accepts (not after the wall clock).
    now_ms = time.time() * 1000
    last = max(r.event_ms for r in impressions if r.event_ms is not None and r.event_ms < now_ms)
    beat = datetime.fromtimestamp(last / 1000, UTC) + timedelta(hours=3)
    metrics_log = Path(metrics_log_path(config, "joiner"))
    closed = (beat - timedelta(seconds=config.streaming.watermark_delay_seconds)).isoformat()
    deadline = time.monotonic() + 900
    sent = 0
    while not any(m["watermark"] and m["watermark"] >= closed for m in _metrics(metrics_log)):
        assert final.poll() is None and time.monotonic() < deadline, "the joiner stalled"
        at = beat + timedelta(seconds=sent)
        logger.log_impression(
            {"impression_id": f"heartbeat-{sent}", "user_id": "u", "item_id": "i", "served_at": at}
        )
        for kind in ("click", "like"):  # each action type moves its own watermark input
            logger.log_action(
                {"impression_id": f"heartbeat-{sent}", "action": kind, "action_at": at}
            )
        logger.flush()
        sent += 1
        time.sleep(2)
    final.send_signal(signal.SIGTERM)
    assert final.wait(120) == 0

    rows = read_table_arrow(str(table)).to_pylist()
    ids = [r["impression_id"] for r in rows]
    assert len(ids) == len(set(ids)), "an impression was written twice"
    got = {r["impression_id"]: r for r in rows}

    watermark = max(event_millis(m["watermark"]) for m in _metrics(metrics_log) if m["watermark"])
    window_ms = config.labels.attribution_window_seconds * 1000
    truth = {
        r["impression_id"]: r
        for r in pq.read_table(logs / "truth" / "impressions.parquet").to_pylist()
    }
    # Malformed copies (injected faults) carry fresh ids outside the truth: validation drops them.
    expected = {i: e for i, e in _expected_labels(logs, config.labels).items() if i in truth}
    matured = [i for i, e in expected.items() if e["served_ms"] + window_ms < watermark - 1000]
    assert len(matured) > 1000
    missing = [i for i in matured if i not in got]
    assert not missing, f"{len(missing)} matured impressions missing, e.g. {missing[:5]}"
    for impression_id in matured:
        row, want = got[impression_id], expected[impression_id]["labels"]
        assert row["label"] == int(truth[impression_id]["clicked"]), impression_id
        assert row["label"] == int("click" in want), impression_id
        assert row["label_like"] == int("like" in want), impression_id
        assert row["label_conversion"] == int("conversion" in want), impression_id
    # Negatives only once their window closed; positives may come earlier.
    mature = set(matured)
    assert not [r for r in rows if r["label"] == 0 and r["impression_id"] not in mature]
    assert sum(r["label"] for r in rows) > 10
