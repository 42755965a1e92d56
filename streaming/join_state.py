"""What the joiner's sink remembers between micro-batches, bounded by the watermark.

Each impression is written once: the sink remembers every impression it wrote while input for it
can still arrive, and drops a later row for it (a second click of a written positive, a re-sent
impression's copy). Secondary actions (like, conversion) are remembered the same way, so exact
re-sends are dropped and later ones can still be attributed to a written positive. Keeping this
on the driver instead of in Spark state operators saves each micro-batch two stateful stages;
the memory is bounded by the watermark either way. Plain Python: the sink fills it from its
batches and restores it from its tables (`freshlake.streaming.join_sink.restore_state`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from freshlake.config import Config

# (impression_id, action, action_at): the key of an action, as `features.quality.ACTION_KEY`
Action = tuple[str, str, datetime]
EPOCH = datetime(1970, 1, 1)


@dataclass
class JoinerState:
    """Impressions written, and secondary actions seen, still within reach of new input.

    Bounded by Spark's event-time watermark (read from the checkpoint's offset log): once a
    batch's watermark passed `served_at + window`, Spark has decided every impression served
    before and drops later actions for it as late, so after that batch an entry older than
    `watermark - keep` is never needed (keep = window + clock skew + watermark delay, the delay
    as a margin). `watermark` is that of the last batch processed. Times are naive UTC, as Spark
    returns them. The sink updates it only after a batch's writes succeeded.
    """

    keep: timedelta
    written: dict[str, datetime] = field(default_factory=dict)  # impression_id -> served_at
    positives: dict[str, datetime] = field(default_factory=dict)  # the written positives
    secondary: dict[str, set[tuple[str, datetime]]] = field(default_factory=dict)
    watermark: datetime | None = None

    @classmethod
    def empty(cls, config: Config, watermark: datetime | None = None) -> JoinerState:
        """Nothing remembered yet, as of a batch that ran with `watermark`."""
        labels = config.labels
        keep = timedelta(
            seconds=labels.attribution_window_seconds
            + labels.clock_skew_seconds
            + config.streaming.watermark_delay_seconds
        )
        return cls(keep=keep, watermark=watermark)

    def since(self) -> datetime:
        """Entries older than this are out of reach of any input Spark still accepts."""
        return (self.watermark or EPOCH) - self.keep

    def remember_written(self, rows: Iterable[tuple[str, datetime, bool]]) -> None:
        """Impressions written to `fresh_examples`: (impression_id, served_at, is_positive)."""
        for impression_id, served_at, positive in rows:
            self.written[impression_id] = served_at
            if positive:
                self.positives[impression_id] = served_at

    def add_secondary(self, rows: Iterable[Action]) -> None:
        """Secondary actions written to `fresh_actions`."""
        for impression_id, action, action_at in rows:
            self.secondary.setdefault(impression_id, set()).add((action, action_at))

    def new_secondary(self, rows: Iterable[Action]) -> tuple[list[bool], int]:
        """(per row of `rows`: not seen before, count of late ones): exact re-sends of an action
        remembered, or repeated within `rows`, are dropped, and so are actions older than
        everything remembered (`since`), which can neither be deduplicated nor attributed."""
        since, seen, keep, late = self.since(), set(), [], 0
        for row in rows:
            impression_id, action, action_at = row
            too_late = action_at < since
            late += too_late
            known = row in seen or (action, action_at) in self.secondary.get(impression_id, ())
            keep.append(not too_late and not known)
            seen.add(row)
        return keep, late

    def advance(self, watermark: datetime) -> None:
        """Move to a newer watermark and forget what fell out of reach."""
        if self.watermark is not None and watermark <= self.watermark:
            return
        self.watermark = watermark
        since = self.since()
        self.written = {k: v for k, v in self.written.items() if v >= since}
        self.positives = {k: v for k, v in self.positives.items() if v >= since}
        for key in [k for k, acts in self.secondary.items() if max(t for _, t in acts) < since]:
            del self.secondary[key]
