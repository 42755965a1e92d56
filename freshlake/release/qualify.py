"""Qualification: a model's metrics on rows it never trained on, per slice, against thresholds.

The qualification set is the `release.qualify_split` (eval) rows of `release.qualify_table`:
trainers read only `split=train`, so no model has seen them; `start_date` narrows it to the days
after a training window. Thresholds come from the `release` config section: calibration consistent
with `calibration_band` (its 95% interval overlaps the band, and is no wider than
+-`max_calibration_ci`: the rows' sampling error is part of the judgment) and NE at most
`max_ne` always; against the current champion (scored on the
same rows) AUC at most `max_auc_drop` lower, NE at most `max_ne_increase` higher, relative
prediction difference at most `max_prediction_difference`. Slices: region, surface, and rare vs
head items (the builder's rare-item strata); the worst slice is named. The report is written
beside the model as `qualification.json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshlake import contract
from freshlake.config import Config, ReleaseConfig
from freshlake.release.rows import (
    labels_and_weights,
    merged_layout,
    predict_rows,
    read_rows,
    table_snapshot,
)
from freshlake.training.artifact import read_card
from freshlake.training.batch import FeatureLayout
from freshlake.training.metrics import evaluate_predictions, prediction_difference
from freshlake.training.scoring import card_layout

REPORT_FILE = "qualification.json"
SLICE_COLUMNS = ("region", "surface")


class NoQualificationRowsError(ValueError):
    """The qualification set is empty."""


@dataclass(frozen=True)
class Check:
    """One threshold: the measured value, the limit and whether the model passed it."""

    name: str
    value: float
    threshold: float
    passed: bool
    detail: str


def qualification_rows(
    config: Config,
    layouts: list[FeatureLayout],
    table: str | None = None,
    version: int | None = None,
    start_date: date | None = None,
) -> tuple[dict[str, Any], pa.Table]:
    """The qualification set (where it came from, its rows): split=qualify_split, dt >= start."""
    r = config.release
    snapshot = table_snapshot(config, table or r.qualify_table, version)
    rows = read_rows(snapshot, merged_layout(layouts))
    keep = pc.equal(rows.column(contract.SPLIT), r.qualify_split)
    if start_date is not None:
        keep = pc.and_(keep, pc.greater_equal(rows.column(contract.DT), pa.scalar(start_date)))
    rows = rows.filter(pc.fill_null(keep, False))
    source = {
        "table": table or r.qualify_table,
        "uri": snapshot.uri,
        "version": snapshot.version,
        "split": r.qualify_split,
        "start_date": start_date.isoformat() if start_date else None,
        "rows": rows.num_rows,
    }
    if rows.num_rows == 0:
        raise NoQualificationRowsError(
            f"no rows with split={r.qualify_split!r}"
            + (f" and dt >= {start_date}" if start_date else "")
            + f" in {snapshot.uri} v{snapshot.version}"
        )
    return source, rows


def slice_keys(rows: pa.Table) -> dict[str, np.ndarray]:
    """Slice name per row for each slicing: region=..., surface=..., items=rare|head."""
    keys = {}
    for column in SLICE_COLUMNS:
        if column in rows.column_names:
            values = pc.fill_null(rows.column(column).cast(pa.string()), "(null)")
            keys[column] = np.array([f"{column}={v}" for v in values.to_pylist()], dtype=object)
    if contract.STRATUM in rows.column_names:
        stratum = pc.fill_null(rows.column(contract.STRATUM), "")
        rare = pc.ends_with(stratum, "_rare").to_numpy(zero_copy_only=False)
        keys["items"] = np.where(rare, "items=rare", "items=head").astype(object)
    return keys


def slice_metrics(
    keys: dict[str, np.ndarray],
    label: np.ndarray,
    weight: np.ndarray,
    pred: np.ndarray,
    champion_pred: np.ndarray | None,
    min_rows: int,
) -> list[dict[str, Any]]:
    """Metrics of every slice (and the champion's on it); `judged` when it has min_rows rows."""
    out = []
    for values in keys.values():
        for name in sorted(set(values)):
            mask = values == name
            entry: dict[str, Any] = {
                "slice": name,
                "judged": bool(mask.sum() >= min_rows and label[mask].sum() > 0),
                "model": evaluate_predictions(label[mask], pred[mask], weight[mask]),
            }
            if champion_pred is not None:
                entry["champion"] = evaluate_predictions(
                    label[mask], champion_pred[mask], weight[mask]
                )
            out.append(entry)
    return out


def worst_slice(slices: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The judged slice with the largest NE increase over the champion (no champion: largest NE)."""

    def badness(entry: dict[str, Any]) -> float:
        ne = entry["model"]["normalized_entropy"]
        return ne - entry["champion"]["normalized_entropy"] if "champion" in entry else ne

    judged = [s for s in slices if s["judged"] and np.isfinite(badness(s))]
    if not judged:
        return None
    worst = max(judged, key=badness)
    return {"slice": worst["slice"], "badness": badness(worst), **worst}


def judge(
    r: ReleaseConfig,
    model: dict[str, float],
    champion: dict[str, float] | None,
    pd: dict[str, float] | None,
    worst: dict[str, Any] | None,
) -> list[Check]:
    """Every threshold of the `release` section applied to the measured metrics."""
    low, high = r.calibration_band
    cal, ne = model["calibration"], model["normalized_entropy"]
    ci_low, ci_high = model["calibration_ci_low"], model["calibration_ci_high"]
    half_width = float(np.sqrt(ci_high / ci_low) - 1) if ci_low > 0 else float("inf")
    consistent = ci_low <= high and ci_high >= low
    checks = [
        Check(
            "calibration",
            cal,
            high if cal > 1 else low,
            consistent,
            f"band [{low}, {high}], 95% interval [{ci_low:.3f}, {ci_high:.3f}] "
            + ("overlaps it" if consistent else "lies outside it"),
        ),
        Check(
            "calibration_precision",
            half_width,
            r.max_calibration_ci,
            half_width <= r.max_calibration_ci,
            f"95% interval +-{half_width:.1%} on {model.get('clicks', 0):.0f} clicks: "
            "enough to judge calibration",
        ),
        Check("normalized_entropy", ne, r.max_ne, ne <= r.max_ne, "below 1 beats the base rate"),
    ]
    if champion is not None and pd is not None:
        auc_floor = champion["auc"] - r.max_auc_drop
        ne_ceiling = champion["normalized_entropy"] + r.max_ne_increase
        checks += [
            Check(
                "auc_vs_champion",
                model["auc"],
                auc_floor,
                model["auc"] >= auc_floor,
                f"champion {champion['auc']:.4f} - {r.max_auc_drop}",
            ),
            Check(
                "ne_vs_champion",
                ne,
                ne_ceiling,
                ne <= ne_ceiling,
                f"champion {champion['normalized_entropy']:.4f} + {r.max_ne_increase}",
            ),
            Check(
                "prediction_difference",
                pd["pd_relative"],
                r.max_prediction_difference,
                pd["pd_relative"] <= r.max_prediction_difference,
                "relative PD against the champion on the same rows",
            ),
        ]
    if r.max_slice_ne is not None and worst is not None:
        slice_ne = worst["model"]["normalized_entropy"]
        checks.append(
            Check(
                "worst_slice_ne",
                slice_ne,
                r.max_slice_ne,
                slice_ne <= r.max_slice_ne,
                f"worst slice {worst['slice']}",
            )
        )
    return checks


def qualify(
    config: Config,
    model_dir: str | Path,
    champion_dir: str | Path | None = None,
    champion_version: str | None = None,
    table: str | None = None,
    version: int | None = None,
    start_date: date | None = None,
) -> dict[str, Any]:
    """Qualify the model in `model_dir` (against `champion_dir` when given); write the report."""
    r = config.release
    layouts = [card_layout(read_card(model_dir))]
    if champion_dir is not None:
        layouts.append(card_layout(read_card(champion_dir)))
    source, rows = qualification_rows(config, layouts, table, version, start_date)
    label, weight = labels_and_weights(rows, layouts[0])
    pred = predict_rows(model_dir, rows)
    model = evaluate_predictions(label, pred, weight)
    champion_pred = predict_rows(champion_dir, rows) if champion_dir is not None else None
    champion = pd = None
    if champion_pred is not None:
        champion = evaluate_predictions(label, champion_pred, weight)
        pd = prediction_difference(pred, champion_pred)
    slices = slice_metrics(slice_keys(rows), label, weight, pred, champion_pred, r.min_slice_rows)
    worst = worst_slice(slices)
    checks = judge(r, model, champion, pd, worst)
    report = {
        "qualified": all(c.passed for c in checks),
        "qualified_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_dir": str(Path(model_dir).resolve()),
        "qualification_set": source,
        "metrics": model,
        "champion": None
        if champion is None
        else {"version": champion_version, "metrics": champion, "prediction_difference": pd},
        "checks": [asdict(c) for c in checks],
        "failed": [c.name for c in checks if not c.passed],
        "worst_slice": None if worst is None else worst["slice"],
        "slices": slices,
        "thresholds": r.model_dump(mode="json"),
    }
    write_report(model_dir, report)
    return report


def write_report(model_dir: str | Path, report: dict[str, Any]) -> Path:
    """`qualification.json` beside the model (replaced by every qualification)."""
    path = Path(model_dir) / REPORT_FILE
    path.write_text(json.dumps(report, indent=2, sort_keys=True, default=_plain) + "\n")
    return path


def read_report(model_dir: str | Path) -> dict[str, Any] | None:
    """The model's qualification report, or None when it was never qualified."""
    path = Path(model_dir) / REPORT_FILE
    return json.loads(path.read_text()) if path.exists() else None


def format_report(report: dict[str, Any]) -> str:
    """The verdict, each check and the worst slice, as text."""
    verdict = "QUALIFIED" if report["qualified"] else "NOT QUALIFIED"
    s = report["qualification_set"]
    lines = [
        f"{verdict}: {report['model_dir']}",
        f"qualification set: {s['table']} v{s['version']} split={s['split']}"
        + (f" dt>={s['start_date']}" if s["start_date"] else "")
        + f", {s['rows']:,d} rows",
    ]
    m = report["metrics"]
    lines.append(
        f"model:    AUC {m['auc']:.4f}  NE {m['normalized_entropy']:.4f}  "
        f"calibration {m['calibration']:.3f} {_interval(m)}"
    )
    if report["champion"]:
        c = report["champion"]["metrics"]
        lines.append(
            f"champion: AUC {c['auc']:.4f}  NE {c['normalized_entropy']:.4f}  "
            f"calibration {c['calibration']:.3f} {_interval(c)}  (version {report['champion']['version']})"
        )
    for check in report["checks"]:
        mark = "ok  " if check["passed"] else "FAIL"
        lines.append(
            f"  {mark} {check['name']:22s} {check['value']:.4f} (limit {check['threshold']:.4f}) "
            f"{check['detail']}"
        )
    if report["worst_slice"]:
        worst = next(x for x in report["slices"] if x["slice"] == report["worst_slice"])
        wm = worst["model"]
        lines.append(
            f"worst slice: {report['worst_slice']} (NE {wm['normalized_entropy']:.4f}, "
            f"calibration {wm['calibration']:.3f}, {wm['rows']:,d} rows)"
        )
    return "\n".join(lines)


def _interval(metrics: dict[str, Any]) -> str:
    """The calibration's 95% interval as text (reports written before it had none: empty)."""
    if "calibration_ci_low" not in metrics:
        return ""
    return f"[{metrics['calibration_ci_low']:.3f}, {metrics['calibration_ci_high']:.3f}]"


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
