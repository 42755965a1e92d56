"""The canary: the challenger scored beside the champion on the newest matured fresh examples.

Each pass reads the rows of `release.canary_table` that the challenger never trained on (when
it trained on that table: those served after the newest event of its snapshot, as its card
records it, else the files added after its pinned version), keeps those served at
least `release.canary_maturity_seconds` (default: the attribution window) before the newest row
(their labels are final) and after the previous pass's cutoff, scores them with both models
(shadow scoring: neither serves them) and adds their weighted log loss to the running sums kept
as tags of the challenger's model version, so passes accumulate across runs. Once
`release.canary_min_rows` rows were scored: when the challenger's log loss exceeds the
champion's by more than `release.canary_margin` (relative), the `challenger` alias returns to
the champion and an alert lands in `monitor_alerts`; otherwise the canary passes (and, when
asked, the challenger is promoted).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshlake.config import Config
from freshlake.lake import Lake
from freshlake.monitor import ALERT, OK, CheckResult, write_results
from freshlake.release.events import record_event
from freshlake.release.registry import CHALLENGER, CHAMPION, AliasMove, Registry
from freshlake.release.rows import (
    labels_and_weights,
    merged_layout,
    predict_rows,
    read_rows,
    table_snapshot,
)
from freshlake.training.artifact import read_card
from freshlake.training.metrics import EPS
from freshlake.training.scoring import card_layout
from freshlake.training.snapshot import added_since

PENDING, PASSED, ROLLED_BACK, IDLE = "pending", "passed", "rolled_back", "idle"
CHECK_NAME = "canary"


@dataclass
class CanaryState:
    """Running sums of one challenger's canary against one champion (model version tags)."""

    champion: str
    cutoff: str | None = None  # served_at of the newest row scored so far (ISO)
    rows: int = 0
    weight: float = 0.0
    loss_champion: float = 0.0  # sum of weight x log loss
    loss_challenger: float = 0.0

    @classmethod
    def from_tags(cls, tags: dict[str, str], champion: str) -> CanaryState:
        if tags.get("canary.champion") != champion:  # a new champion: start over
            return cls(champion)
        return cls(
            champion,
            tags.get("canary.cutoff") or None,
            int(tags.get("canary.rows", 0)),
            float(tags.get("canary.weight", 0)),
            float(tags.get("canary.loss_champion", 0)),
            float(tags.get("canary.loss_challenger", 0)),
        )

    def tags(self) -> dict[str, Any]:
        return {f"canary.{k}": "" if v is None else v for k, v in asdict(self).items()}

    def log_losses(self) -> tuple[float, float]:
        """(champion, challenger) weighted mean log loss so far."""
        w = max(self.weight, EPS)
        return self.loss_champion / w, self.loss_challenger / w

    def relative_increase(self) -> float:
        """How much worse the challenger's log loss is, relative to the champion's."""
        champion, challenger = self.log_losses()
        return (challenger - champion) / max(champion, EPS)


def _log_loss(label: np.ndarray, pred: np.ndarray) -> np.ndarray:
    p = np.clip(pred, EPS, 1 - EPS)
    return -(label * np.log(p) + (1 - label) * np.log(1 - p))


def matured_rows(
    config: Config, challenger_card: dict[str, Any], layouts, after: str | None
) -> tuple[pa.Table, str | None, int]:
    """Rows to score now, the new cutoff (newest served_at among them) and the table version."""
    r = config.release
    snapshot = table_snapshot(config, r.canary_table)
    data = challenger_card["data"]
    if data.get("uri") == snapshot.uri and data.get("version") is not None:
        trained_until = challenger_card["training"]["start"].get("delayed_feedback", {}).get("now")
        if trained_until is None:
            snapshot = added_since(snapshot, int(data["version"]), config.lake.storage_options)
        else:
            # Served after the newest event of the challenger's snapshot: rows it never saw,
            # clicks included. (The files added after its version would hold the negatives of
            # the impressions it had not decided yet, but not their clicks: the joiner wrote
            # those at once, into the versions it trained on.)
            after = _later(after, trained_until)
    rows = read_rows(snapshot, merged_layout(layouts))
    if rows.num_rows == 0:
        return rows, after, snapshot.version
    served = rows.column("served_at")
    maturity = r.canary_maturity_seconds
    if maturity is None:
        maturity = config.labels.attribution_window_seconds
    cutoff = pc.max(served).as_py() - timedelta(seconds=maturity)
    keep = pc.less_equal(served, _scalar(cutoff, served.type))
    if after:
        start = datetime.fromisoformat(after)
        keep = pc.and_(keep, pc.greater(served, _scalar(start, served.type)))
    rows = rows.filter(pc.fill_null(keep, False))
    newest = pc.max(rows.column("served_at")).as_py() if rows.num_rows else None
    return rows, newest.isoformat() if newest else after, snapshot.version


def _later(a: str | None, b: str | None) -> str | None:
    """The later of two ISO times (either may be None; a time without a zone is UTC)."""

    def parse(text: str) -> datetime:
        moment = datetime.fromisoformat(text)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    if a is None or b is None:
        return a or b
    return a if parse(a) >= parse(b) else b


def _scalar(moment: datetime, data_type: pa.DataType) -> pa.Scalar:
    """`moment` as a scalar of the served_at column's type (UTC, with or without a zone)."""
    if getattr(data_type, "tz", None) is None and moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    elif getattr(data_type, "tz", None) is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return pa.scalar(moment, data_type)


def canary_pass(
    config: Config,
    registry: Registry,
    event_lake: Callable[[], Lake],
    promote: bool = False,
) -> dict[str, Any]:
    """One canary pass; returns its outcome (status pending | passed | rolled_back | idle).

    `event_lake` opens the lake for the release events and the alert; it is called only when
    the pass reaches a verdict, so an idle or pending pass starts no Spark session.
    """
    r = config.release
    champion = registry.alias_version(CHAMPION)
    challenger = registry.alias_version(CHALLENGER)
    if champion is None or challenger is None or champion == challenger:
        return {"status": IDLE, "champion": champion, "challenger": challenger}
    version = registry.model_version(challenger)
    decided = version.tags.get("canary")
    if decided in (PASSED, "failed"):
        return {"status": decided, "champion": champion, "challenger": challenger}
    state = CanaryState.from_tags(version.tags, champion)
    with (
        registry.checked_out(champion) as champion_dir,
        registry.checked_out(challenger) as challenger_dir,
    ):
        card = read_card(challenger_dir)
        layouts = [card_layout(card), card_layout(read_card(champion_dir))]
        rows, cutoff, table_version = matured_rows(config, card, layouts, state.cutoff)
        if rows.num_rows:
            label, weight = labels_and_weights(rows, layouts[0])
            champion_pred = predict_rows(champion_dir, rows)
            challenger_pred = predict_rows(challenger_dir, rows)
            state.rows += rows.num_rows
            state.weight += float(weight.sum())
            state.loss_champion += float((weight * _log_loss(label, champion_pred)).sum())
            state.loss_challenger += float((weight * _log_loss(label, challenger_pred)).sum())
            state.cutoff = cutoff
    registry.tag(challenger, {**state.tags(), "canary.table_version": table_version})
    champion_loss, challenger_loss = state.log_losses()
    outcome = {
        "champion": champion,
        "challenger": challenger,
        "new_rows": rows.num_rows,
        "rows": state.rows,
        "min_rows": r.canary_min_rows,
        "log_loss_champion": champion_loss,
        "log_loss_challenger": challenger_loss,
        "relative_increase": state.relative_increase() if state.rows else None,
        "margin": r.canary_margin,
        "table_version": table_version,
        "cutoff": state.cutoff,
    }
    if state.rows < r.canary_min_rows:
        return {"status": PENDING, **outcome}
    worse = state.relative_increase() > r.canary_margin
    detail = (
        f"challenger v{challenger} log loss {challenger_loss:.5f} vs champion v{champion} "
        f"{champion_loss:.5f} over {state.rows} matured rows"
    )
    moves: list[AliasMove] = []
    if worse:
        moves.append(registry.reject_challenger(f"canary: {detail}"))
    else:
        registry.tag(challenger, {"canary": PASSED})
        if promote:
            moves.append(registry.promote(challenger, f"canary passed: {detail}"))
    lake = event_lake()
    for move in moves:
        record_event(lake, registry.name, move, outcome)
    now = datetime.now(UTC)
    result = CheckResult(
        CHECK_NAME,
        f"{registry.name} v{challenger}",
        ALERT if worse else OK,
        state.relative_increase(),
        r.canary_margin,
        ("rolled back: " if worse else "passed: ") + detail,
        None,
    )
    write_results(lake, [result], f"canary-{uuid.uuid4().hex[:12]}", now)
    return {"status": ROLLED_BACK if worse else PASSED, "detail": detail, **outcome}
