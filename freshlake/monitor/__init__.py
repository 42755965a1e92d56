"""Data-quality monitors: checks over the lake's tables that page when something breaks.

`run_monitors(lake, config, day, model_dir)` returns one `CheckResult` (name, subject,
status ok|alert|skipped, value, threshold, detail) per check and subject:

- `source_share` (traffic.py): each source's (region's) share of the day's impressions against
  its trailing baseline; a source whose pipeline stopped drops to ~0 and fires.
- `volume`, `ctr` (traffic.py): the day's impressions and CTR against the trailing days (z-score
  and relative change).
- `skew` (skew.py): PSI per feature, `examples` against the newest day of `fresh_examples`.
- `label_coverage` (coverage.py): clicks joined into examples / clicks logged in `actions`.
- `freshness`, `model_age` (freshness.py): last `fresh_examples` commit and model card age.

Thresholds live in the `monitor` config section. `write_results` appends a run to the
`monitor_alerts` table; `latest_results` reads the newest run back (the HTML report shows it).
"""

from freshlake.monitor.results import (
    ALERT,
    MONITOR_TABLE,
    OK,
    SKIPPED,
    CheckResult,
    format_results,
    latest_results,
    write_results,
)
from freshlake.monitor.runner import run_monitors

__all__ = [
    "ALERT",
    "MONITOR_TABLE",
    "OK",
    "SKIPPED",
    "CheckResult",
    "format_results",
    "latest_results",
    "run_monitors",
    "write_results",
]
