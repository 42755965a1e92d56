"""The champion and challenger of the model registry, side by side, and the release events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from freshlake.config import Config
from freshlake.lake import Lake
from freshlake.release.events import read_events
from freshlake.release.registry import CHALLENGER, CHAMPION, Registry, default_uris
from freshlake.report.page import Section, html_table

TITLE = "Champion and challenger"
METRICS = ("auc", "normalized_entropy", "calibration")
HEADER = (
    "role",
    "version",
    "trained on",
    "qualification AUC",
    "NE",
    "calibration",
    "worst slice",
    "canary rows",
    "canary log loss (champion / this)",
    "status",
)


def registry_exists(config: Config) -> bool:
    """Whether there is a registry to read (the embedded SQLite store is created on first use)."""
    uri = config.release.tracking_uri
    if uri is None:
        if "://" in config.lake.root:
            return False
        uri = default_uris(config)[0]
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).exists()


def _row(registry: Registry, role: str, version: str) -> list[Any]:
    mv = registry.model_version(version)
    tags = mv.tags
    metrics = registry.client.get_run(mv.run_id).data.metrics if mv.run_id else {}
    rows = tags.get("canary.rows")
    losses = ""
    if rows and float(tags.get("canary.weight") or 0) > 0:
        weight = float(tags["canary.weight"])
        champion = float(tags["canary.loss_champion"]) / weight
        this = float(tags["canary.loss_challenger"]) / weight
        losses = f"{champion:.5f} / {this:.5f}"
    status = (
        tags.get("rejected_because")
        or tags.get("rolled_back_because")
        or tags.get("promoted_because")
        or ""
    )
    return [
        role,
        version,
        f"{tags.get('lineage.table', '?')} v{tags.get('lineage.delta_version', '?')}",
        *(metrics.get(f"qualification.{m}") for m in METRICS),
        tags.get("qualification.worst_slice"),
        int(rows) if rows else None,
        losses,
        status,
    ]


def release_section(lake: Lake, config: Config) -> Section:
    """The champion, the challenger (or the newest rejected one) and the latest release events."""
    if not registry_exists(config):
        return Section(TITLE, None, "no model registry yet (freshlake register / promote)")
    registry = Registry(config)
    champion = registry.alias_version(CHAMPION)
    challenger = registry.alias_version(CHALLENGER)
    versions = registry.versions()
    rows = []
    if champion:
        rows.append(_row(registry, CHAMPION, champion))
    if challenger and challenger != champion:
        rows.append(_row(registry, CHALLENGER, challenger))
    newest = str(versions[-1].version) if versions else None
    if newest and newest not in (champion, challenger):
        role = "rejected" if versions[-1].tags.get("canary") == "failed" else "newest"
        rows.append(_row(registry, role, newest))
    if not rows:
        return Section(TITLE, None, f"{registry.name} has no champion or challenger yet")
    events = read_events(lake)[-10:]
    event_table = html_table(
        ("at", "action", "alias", "version", "was", "reason"),
        [
            (
                f"{e['event_at']:%Y-%m-%d %H:%M:%S}",
                e["action"],
                e["alias"],
                e["version"],
                e["previous_version"],
                e["reason"],
            )
            for e in events
            if e["model_name"] == registry.name
        ],
    )
    note = (
        f"{registry.name} in {registry.registry_uri}: {len(versions)} version(s); qualification "
        "metrics on rows no trainer read, canary log loss on matured fresh examples"
    )
    return Section(TITLE, None, note, html_table(HEADER, rows) + "<p></p>" + event_table)
