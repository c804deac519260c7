"""Cron expressions in a time zone: when the digest is due, and which period it covers.

A period runs from one scheduled time to the next, so weekday digests at 09:00 cover Friday 09:00
to Monday 09:00 on a Monday. The period's key (its end, in UTC) names it: one digest per channel
and key, whoever posts it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from huey import crontab

# Look back this far for the previous scheduled time; a schedule rarer than this covers this.
MAX_PERIOD = timedelta(days=35)


def cron(expression: str) -> Callable[[datetime], bool]:
    """A matcher for a five-field cron expression (minute hour day month weekday)."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} is not a cron expression: five fields, minute hour day month "
            "weekday, e.g. '0 9 * * 1-5'"
        )
    try:
        return crontab(*fields, strict=True)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise ValueError(f"{expression!r}: {exc}") from None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone name like UTC or Europe/Berlin") from None


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        return self.end.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")

    def previous(self) -> Period:
        return Period(self.start - (self.end - self.start), self.start)

    def label(self, tz: ZoneInfo) -> str:
        start, end = self.start.astimezone(tz), self.end.astimezone(tz)
        return f"{start:%a %d %b %H:%M} – {end:%a %d %b %H:%M} {tz.key}"


def last_fire(expression: str, tz: ZoneInfo, now: datetime) -> datetime | None:
    """The latest scheduled minute at or before `now`, within MAX_PERIOD."""
    matches = cron(expression)
    minute = now.astimezone(tz).replace(second=0, microsecond=0)
    oldest = minute - MAX_PERIOD
    while minute > oldest:
        if matches(minute):
            return minute
        minute -= timedelta(minutes=1)
    return None


def period_ending(expression: str, tz: ZoneInfo, end: datetime) -> Period:
    """From the scheduled time before `end` to `end` (a day, when none is found)."""
    before = last_fire(expression, tz, end - timedelta(minutes=1))
    return Period(before if before is not None else end - timedelta(days=1), end)
