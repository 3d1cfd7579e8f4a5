"""The one place that turns a partition key into a time window (UTC calendar days)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

# Improvement (I_t) compares two 14-day windows, so a day's I_t reads 27 days before it.
IMPROVEMENT_CONTEXT_DAYS = 27


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.utc)


@dataclass(frozen=True)
class DayRange:
    """Whole UTC days [first, end)."""

    first: date
    end: date

    @classmethod
    def from_key(cls, partition_key: str) -> "DayRange":
        first = date.fromisoformat(partition_key)
        return cls(first, first + timedelta(days=1))

    @classmethod
    def from_datetimes(cls, start: datetime, end: datetime) -> "DayRange":
        return cls(start.astimezone(timezone.utc).date(), end.astimezone(timezone.utc).date())

    @property
    def days(self) -> int:
        return (self.end - self.first).days

    def bounds(self) -> dict:
        """Bind parameters for SQL reading this range and the I_t context before it."""
        return {
            "window_start": day_start(self.first),
            "window_end": day_start(self.end),
            "context_day": self.first - timedelta(days=IMPROVEMENT_CONTEXT_DAYS),
            "first_day": self.first,
            "end_day": self.end,
        }


def iso_monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def week_as_of(week_start: date, today: date) -> date:
    """The KPI as-of day of an ISO week: its Sunday, or yesterday for the running week."""
    if week_start.weekday() != 0:
        raise ValueError(f"week_start {week_start} is not an ISO Monday")
    return min(week_start + timedelta(days=6), today - timedelta(days=1))
