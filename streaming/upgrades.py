"""In-place label upgrades of written examples: a secondary action (like, conversion) that
arrives after its impression's positive row was written sets that row's `label_<action>` to 1.

A Delta MERGE on (dt, impression_id) through the lake's engine (`Lake.merge_update`); setting a
0/1 label to 1 is idempotent, so a micro-batch replayed after a crash may run it again harmlessly.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from freshlake.config import LabelConfig
from freshlake.features.labeling import label_column, labeled_actions
from freshlake.lake import Lake


def upgrade_labels(
    lake: Lake,
    table: str,
    upgrades: list[tuple[str, datetime, str, datetime]],
    labels: LabelConfig,
) -> int:
    """Set `label_<action>` = 1 for each (impression_id, served_at, action, action_at); rows updated."""
    actions = [a for a in labeled_actions(labels) if a != labels.positive_action]
    flags: dict[tuple[str, object], dict[str, int]] = {}
    for impression_id, served_at, action, _action_at in upgrades:
        if action in actions:
            key = (impression_id, served_at.date())
            flags.setdefault(key, dict.fromkeys(actions, 0))[action] = 1
    if not flags or not lake.exists(table):
        return 0
    source = pa.table(
        {
            "impression_id": pa.array([k[0] for k in flags], pa.string()),
            "dt": pa.array([k[1] for k in flags], pa.date32()),
            **{
                label_column(a): pa.array([f[a] for f in flags.values()], pa.int32())
                for a in actions
            },
        }
    )
    updates = {
        label_column(a): f"CASE WHEN s.{label_column(a)} = 1 THEN 1 ELSE t.{label_column(a)} END"
        for a in actions
    }
    return lake.merge_update(table, source, keys=["dt", "impression_id"], updates=updates)
