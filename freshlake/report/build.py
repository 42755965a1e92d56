"""Build the HTML report from the lake's tables (`freshlake report`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from freshlake.config import Config
from freshlake.lake import Lake
from freshlake.monitor import latest_results, run_monitors
from freshlake.monitor.daily import IMPRESSIONS, daily_ctr, daily_source_counts
from freshlake.report import data, figures
from freshlake.report.calibration import model_calibration
from freshlake.report.page import Section, render_page, results_table
from freshlake.report.release import release_section

log = logging.getLogger(__name__)


def traffic_sections(lake: Lake, config: Config) -> list[Section]:
    """CTR by day and source shares by day, from `impressions` and `actions`."""
    if not lake.exists(IMPRESSIONS):
        note = "no impressions table yet (run `freshlake ingest`)"
        return [Section("CTR by day", None, note), Section("Source shares by day", None, note)]
    daily = daily_ctr(lake, config.labels)
    column = config.monitor.source_column
    counts = daily_source_counts(lake, column)
    ctr_note = (
        f"{int(daily['impressions'].sum())} impressions over {len(daily)} days; clicks are "
        f"impressions with a {config.labels.positive_action} in the attribution window"
    )
    return [
        Section("CTR by day", figures.ctr_by_day(daily), ctr_note),
        Section(
            f"Source shares by day ({column})",
            figures.source_shares(counts, column),
            f"{counts['source'].nunique()} sources",
        ),
    ]


def composition_section(lake: Lake) -> Section:
    composition = data.stratum_composition(lake)
    title = "Sample composition by stratum"
    if composition.empty:
        return Section(title, None, "no examples or fresh_examples table yet")
    rows = ", ".join(
        f"{t}: {int(g['rows'].sum())} rows" for t, g in composition.groupby("table", sort=True)
    )
    return Section(title, figures.stratum_composition(composition), rows)


def calibration_section(config: Config, model_dir: str | Path | None) -> Section:
    title = "Calibration"
    if model_dir is None:
        return Section(title, None, "no model given (--model DIR)")
    try:
        cal = model_calibration(config, model_dir)
    except (OSError, ValueError, KeyError) as exc:
        return Section(title, None, f"no calibration for {model_dir}: {exc}")
    metric = "" if cal.metric is None else f", calibration (sum pred / sum label) {cal.metric:.3f}"
    note = f"{model_dir}: {cal.rows} eval rows of {cal.source}{metric}"
    return Section(title, figures.calibration_curve(cal), note)


def latency_section(lake: Lake) -> Section:
    title = "Streaming latency (action to committed example)"
    latencies = data.stream_latencies(lake)
    if latencies is None:
        return Section(title, None, f"no {data.STREAM_METRICS} table (streaming joiner not run)")
    if latencies.empty:
        return Section(title, None, f"{data.STREAM_METRICS} has no batch with positives yet")
    p50 = latencies["latency_p50_s"].median()
    note = (
        f"{len(latencies)} micro-batches with positives; median of batch p50 {p50:.2f} s, "
        f"worst batch max {latencies['latency_max_s'].max():.2f} s"
    )
    return Section(title, figures.latency_histogram(latencies), note)


def build_report(lake: Lake, config: Config, model_dir: str | Path | None = None) -> str:
    """The report page: plots from the tables and the newest monitor run's results.

    Without a recorded monitor run (`freshlake monitor`), the monitors run now (not recorded).
    """
    sections = [
        *traffic_sections(lake, config),
        composition_section(lake),
        calibration_section(config, model_dir),
        latency_section(lake),
        release_section(lake, config),
    ]
    results = latest_results(lake)
    if results is None:
        results = run_monitors(lake, config, model_dir=model_dir)
        note = "no recorded monitor run: checks run while building this report"
    else:
        note = f"newest run recorded in monitor_alerts ({len(results)} checks)"
    alerts = sum(r.alert for r in results)
    summary = (
        f"lake {lake.root}, built {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {alerts} monitor alert(s)"
    )
    return render_page("freshlake report", summary, sections, results_table(results), note)


def write_report(path: str | Path, html: str) -> Path:
    """Write the page; returns its absolute path."""
    out = Path(path).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
