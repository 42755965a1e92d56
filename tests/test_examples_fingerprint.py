"""The batch path's output, frozen: generator -> ingest -> item stats -> builder gives exactly
the `examples` it gave when this fingerprint was taken.

Engine work (how files are written and committed, how many passes the builder makes) must not
move a single row, probability, weight or label. A change that moves them on purpose updates
`EXPECTED` in the same commit and says why.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from freshlake.batch.item_stats import write_item_stats
from freshlake.batch.training_set import build_training_set
from freshlake.batch.window import TimeWindow
from freshlake.config import load_config
from freshlake.features.labeling import label_output_columns
from freshlake.ingest.files import ingest_files, logs_layout
from freshlake.lake import open_lake
from freshlake.runs import JobRun
from freshlake.synth import generate_logs
from tests.conftest import REPO

SETTINGS = {
    "generate.seed": 2026,
    "generate.impressions": 20_000,
    "generate.users": 2_000,
    "generate.items": 400,
    "generate.days": 3,
    "generate.formats": ["jsonl"],
    "generate.workers": 1,
    "sampling.rare_item.min_impressions": 30,
    "labels.actions": ["click", "like", "conversion"],
}
EXPECTED = {
    "rows": 2081,
    "sha256": "ae429f2822df25db0688da4175fe44fe8c3854eb79afb01c24140f21b8cc360c",
}


def fingerprint(rows: list[tuple]) -> str:
    digest = hashlib.sha256()
    for row in sorted(rows):
        digest.update(repr(row).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def test_examples_match_the_frozen_fingerprint(spark, tmp_path):
    config = load_config(
        REPO / "conf" / "local.yaml", {"lake.root": str(tmp_path / "lake"), **SETTINGS}
    )
    logs = tmp_path / "logs"
    generate_logs(config.generate, logs)
    ingest_files(config, spark, logs_layout(str(logs)), fmt="jsonl")
    lake = open_lake(config, spark)
    start = config.generate.start
    window = TimeWindow(start, start + timedelta(days=config.generate.days))
    with JobRun("item-stats", config, lake) as run:
        write_item_stats(lake, config, window, run.run_id)
    with JobRun("build-training-set", config, lake) as run:
        build_training_set(lake, config, window, run)

    columns = [
        "impression_id",
        "dt",
        "sample_prob",
        "weight",
        *label_output_columns(config.labels),
    ]
    examples = lake.read("examples").select(*columns).collect()
    got = {"rows": len(examples), "sha256": fingerprint([tuple(r) for r in examples])}
    assert got == EXPECTED
