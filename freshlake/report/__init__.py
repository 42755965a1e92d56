"""The HTML report: one self-contained page with plots built from the lake's tables.

CTR by day and source shares (impressions, actions), sample composition by stratum (examples,
fresh_examples), the calibration curve of a model folder, the streaming latency histogram
(stream_metrics) and the newest monitor results. `build_report(lake, config, model_dir)` returns
the HTML; the plots are PNGs embedded as base64, so the file can be mailed or archived as is.
"""

from freshlake.report.build import build_report, write_report

__all__ = ["build_report", "write_report"]
