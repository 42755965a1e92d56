"""Generate a synthetic log folder (contract 1): log files, truth tables and manifest.json.

    OUT/impressions/part-NNNNN.{jsonl,parquet}   one file per chunk (a slice of one day)
    OUT/actions/part-NNNNN.{jsonl,parquet}       the actions of that chunk's impressions
    OUT/truth/impressions.parquet, items.parquet  what was really generated
    OUT/manifest.json

manifest.json: `seed`, `settings`, `attribution_window_seconds`, `time_range`, `click_model`
(expected CTR, position and hour factors), `truth` (unique impressions, requests, actions by
type, late and repeated clicks) and, per format and record kind, `files`, `records` (lines or
rows written), `valid` (= unique + `duplicates`), `duplicates` and `malformed` (count per
quarantine reason code); `records = valid + malformed_total`.

The work is split into chunks; every chunk draws from its own seed, so the output is
byte-identical for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from math import ceil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from freshlake.config import GenerateConfig
from freshlake.synth import faults, jsonl
from freshlake.synth.schemas import (
    ACTIONS_SCHEMA,
    IMPRESSIONS_SCHEMA,
    TRUTH_IMPRESSIONS_SCHEMA,
    TRUTH_ITEMS_SCHEMA,
)
from freshlake.synth.simulate import ChunkSpec, simulate_actions, simulate_impressions
from freshlake.synth.world import World, build_world

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
OUTPUTS = ("impressions", "actions", "truth", MANIFEST)
GENERATOR_VERSION = 1


def plan_chunks(settings: GenerateConfig) -> list[ChunkSpec]:
    """Impressions spread evenly over the days, each day over enough files."""
    per_day = [len(a) for a in np.array_split(np.arange(settings.impressions), settings.days)]
    files = max(settings.files_per_day, ceil(max(per_day) / settings.max_rows_per_file))
    chunks: list[ChunkSpec] = []
    first_row = 0
    for day, day_rows in enumerate(per_day):
        for rows in (len(a) for a in np.array_split(np.arange(day_rows), files)):
            if rows:
                chunks.append(ChunkSpec(len(chunks), day, rows, first_row))
                first_row += rows
    return chunks


@dataclass(frozen=True)
class Job:
    """What every chunk needs; sent once to each worker process."""

    world: World
    settings: GenerateConfig
    window_seconds: int
    out: Path


@dataclass(frozen=True)
class ChunkResult:
    truth: pa.Table
    item_impressions: np.ndarray
    item_clicks: np.ndarray
    counts: dict[str, Any]


def _part(out: Path, record: str, chunk: int, fmt: str) -> Path:
    return out / record / f"part-{chunk:05d}.{fmt}"


def _json_lines(
    record: faults.RecordKind, table: pa.Table, codes: np.ndarray, rng: np.random.Generator
) -> Iterator[pa.StringArray]:
    """The rendered lines, batch by batch, with the JSONL-only defects patched in."""
    start = 0
    for batch in jsonl.batches(table):
        lines = jsonl.render_json_lines(batch)
        yield faults.corrupt_json_lines(record, lines, codes[start : start + len(lines)], rng)
        start += len(lines)


def _write(
    job: Job, faulty: faults.FaultyLog, schema: pa.Schema, chunk: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Write one chunk of one record kind in every format; return the per-format counts.

    `rng` only draws the JSONL-only defects, so the other formats do not depend on it.
    """
    record = faulty.record
    counts: dict[str, Any] = {}
    for fmt in job.settings.formats:
        path = _part(job.out, record.name, chunk, fmt)
        table, codes = faulty.in_file_order(jsonl=fmt == "jsonl")
        if fmt == "jsonl":
            jsonl.write_json_lines(path, _json_lines(record, table, codes, rng))
        else:
            pq.write_table(table.select(schema.names).cast(schema), path)
        kinds = record.kinds if fmt == "jsonl" else record.typed_kinds
        counts[fmt] = {
            "file": path.relative_to(job.out).as_posix(),
            "records": table.num_rows,
            "duplicates": faulty.count(faults.DUPLICATE),
            "malformed": {k: faulty.count(faults.fault_code(record, k)) for k in kinds},
        }
    return counts


def generate_chunk(job: Job, spec: ChunkSpec) -> ChunkResult:
    """Simulate, corrupt and write one chunk."""
    settings = job.settings
    rng = np.random.default_rng(np.random.SeedSequence([settings.seed, 1, spec.index]))
    line_rng = np.random.default_rng(np.random.SeedSequence([settings.seed, 2, spec.index]))
    imps = simulate_impressions(job.world, settings, spec, rng)
    acts = simulate_actions(imps, settings, job.window_seconds, spec, rng)
    written = {}
    for record, table, times, schema in (
        (faults.IMPRESSIONS, imps.table, imps.served_ms, IMPRESSIONS_SCHEMA),
        (faults.ACTIONS, acts.table, acts.action_ms, ACTIONS_SCHEMA),
    ):
        faulty = faults.inject_faults(
            record,
            table,
            times,
            settings.duplicate_share,
            settings.malformed_share,
            spec.index,
            rng,
        )
        written[record.name] = _write(job, faulty, schema, spec.index, line_rng)
    clicked = acts.truth.column("clicked").to_numpy(zero_copy_only=False)
    items = len(job.world.item_ctr)
    counts = {
        "impressions": spec.rows,
        "requests": imps.requests,
        "clicked_impressions": int(clicked.sum()),
        "actions": acts.table.num_rows,
        **acts.counts,
        "written": written,
    }
    return ChunkResult(
        truth=acts.truth,
        item_impressions=np.bincount(imps.item, minlength=items),
        item_clicks=np.bincount(imps.item[clicked], minlength=items),
        counts=counts,
    )


_WORKER_JOB: Job | None = None


def _init_worker(job: Job) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job


def _run_in_worker(spec: ChunkSpec) -> ChunkResult:
    assert _WORKER_JOB is not None
    return generate_chunk(_WORKER_JOB, spec)


def _results(job: Job, chunks: list[ChunkSpec], workers: int) -> Iterator[ChunkResult]:
    if workers <= 1:
        yield from (generate_chunk(job, spec) for spec in chunks)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    with ProcessPoolExecutor(workers, context, initializer=_init_worker, initargs=(job,)) as pool:
        yield from pool.map(_run_in_worker, chunks)


def _prepare(out: Path, overwrite: bool) -> None:
    existing = [out / name for name in OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{out} already holds generated logs")
    for path in existing:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for name in ("impressions", "actions", "truth"):
        (out / name).mkdir(parents=True)


def _summarise(results: list[dict[str, Any]], record: str, fmt: str) -> dict[str, Any]:
    parts = [r["written"][record][fmt] for r in results]
    malformed = {k: sum(p["malformed"][k] for p in parts) for k in parts[0]["malformed"]}
    duplicates = sum(p["duplicates"] for p in parts)
    records = sum(p["records"] for p in parts)
    return {
        "files": [p["file"] for p in parts],
        "records": records,
        "valid": records - sum(malformed.values()),
        "duplicates": duplicates,
        "malformed": malformed,
        "malformed_total": sum(malformed.values()),
    }


def _manifest(
    job: Job, counts: list[dict[str, Any]], items: tuple[np.ndarray, np.ndarray]
) -> dict[str, Any]:
    settings = job.settings
    world = job.world
    total = {k: sum(c[k] for c in counts) for k in counts[0] if k != "written"}
    start = np.datetime64(settings.start, "D")
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": settings.seed,
        "settings": settings.model_dump(mode="json", exclude={"workers"}),
        "attribution_window_seconds": job.window_seconds,
        "time_range": {
            "start": f"{start}T00:00:00Z",
            "end": f"{start + settings.days}T00:00:00Z",
        },
        "click_model": {
            "expected_ctr": world.expected_ctr(),
            "position_factor": world.position_factor[1:].tolist(),
            "hour_factor": world.hour_factor.tolist(),
            "hour_traffic": world.hour_traffic.tolist(),
            "late_click_share": settings.late_click_share,
        },
        "truth": {
            "impressions": total["impressions"],
            "requests": total["requests"],
            "clicked_impressions": total["clicked_impressions"],
            "items_with_impressions": int((items[0] > 0).sum()),
            "actions": {a: total[a] for a in ("click", "like", "conversion")},
            "actions_total": total["actions"],
            "late_clicks": total["late_clicks"],
            "repeated_clicks": total["repeated_clicks"],
            "likes_without_click": total["likes_without_click"],
        },
        "formats": {
            fmt: {
                "impressions": _summarise(counts, "impressions", fmt),
                "actions": _summarise(counts, "actions", fmt),
            }
            for fmt in settings.formats
        },
    }


def generate_logs(
    settings: GenerateConfig,
    out: str | os.PathLike[str],
    window_seconds: int = 3600,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write a synthetic log folder under `out` and return its manifest (also manifest.json)."""
    out = Path(out)
    _prepare(out, overwrite)
    world = build_world(settings)
    for name in ("item_ids", "user_ids", "vocabulary"):
        jsonl.check_json_safe(name, getattr(world, name))
    job = Job(world, settings, window_seconds, out)
    chunks = plan_chunks(settings)
    workers = min(settings.workers or os.cpu_count() or 1, len(chunks))
    log.info(
        "generating %d impressions in %d files with %d workers into %s",
        settings.impressions,
        len(chunks),
        workers,
        out,
    )
    counts: list[dict[str, Any]] = []
    item_impressions = np.zeros(len(world.item_ctr), dtype=np.int64)
    item_clicks = np.zeros_like(item_impressions)
    with pq.ParquetWriter(out / "truth" / "impressions.parquet", TRUTH_IMPRESSIONS_SCHEMA) as truth:
        for result in _results(job, chunks, workers):
            truth.write_table(result.truth)
            item_impressions += result.item_impressions
            item_clicks += result.item_clicks
            counts.append(result.counts)
    items = pa.Table.from_arrays(
        [
            world.item_ids,
            pa.array(world.item_ctr),
            pa.array(world.item_share),
            pa.array(world.item_category, pa.int32()),
            pa.array(item_impressions),
            pa.array(item_clicks),
        ],
        schema=TRUTH_ITEMS_SCHEMA,
    )
    pq.write_table(items, out / "truth" / "items.parquet")
    manifest = _manifest(job, counts, (item_impressions, item_clicks))
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


__all__ = ["generate_logs", "plan_chunks"]
