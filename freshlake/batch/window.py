"""The time window a batch job covers: `[start, end)` on event time, whole UTC days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta


@dataclass(frozen=True)
class TimeWindow:
    """Whole UTC days `[start, end)`; `end` is exclusive (`--end 2026-01-08` stops at midnight)."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"window end {self.end} must be after its start {self.start}")

    @classmethod
    def ending(cls, end: date, days: int) -> TimeWindow:
        """The `days` whole days before `end`."""
        if days < 1:
            raise ValueError(f"window must cover at least one day, not {days}")
        return cls(end - timedelta(days=days), end)

    @property
    def start_at(self) -> datetime:
        return datetime.combine(self.start, time(), tzinfo=UTC)

    @property
    def end_at(self) -> datetime:
        return datetime.combine(self.end, time(), tzinfo=UTC)

    @property
    def days(self) -> list[date]:
        """Every date in the window, i.e. the `dt` partitions it covers."""
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days)]

    def __str__(self) -> str:
        return f"[{self.start}, {self.end})"
