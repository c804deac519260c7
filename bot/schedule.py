"""Cron expressions in a time zone: when the digest is due, and which period it covers.

A period runs from one scheduled time to the next, so weekday digests at 09:00 cover Friday 09:00
to Monday 09:00 on a Monday. The period's key (its end, in UTC) names it: one digest per channel
and key, whoever posts it.

The expressions are read by cronsim, not by code of ours: five fields (minute hour day month
weekday) with lists, ranges, steps and names (`0 9 * * mon-fri`, `30 8 1 jan,jul *`), as Debian's
cron reads them. cronsim rather than croniter: it is small, pure Python with no dependencies,
typed, works with `zoneinfo` directly, and is written to match Debian's cron, DST quirks
included, which is the behaviour people expect of a cron line. Times are wall-clock times in the
policy's time zone: a time the clock skips when it springs forward (02:30 on that night) fires at
the first minute after the jump (03:00), and a time the clock passes twice when it falls back
fires once, the first time. In UTC there are no such nights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

# Look back this far for the previous scheduled time; a schedule rarer than this covers this.
MAX_PERIOD = timedelta(days=35)

# cronsim names the field it could not read ("Bad hour"); each field's index and what it takes.
_FIELDS = {
    "minute": (0, "minute (0-59)"),
    "hour": (1, "hour (0-23)"),
    "day-of-month": (2, "day of the month (1-31)"),
    "month": (3, "month (1-12 or jan-dec)"),
    "day-of-week": (4, "weekday (0-7 or sun-sat, e.g. mon-fri)"),
}


def _parsed(expression: str, start: datetime, *, reverse: bool = False) -> CronSim:
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} is not a cron expression: five fields, minute hour day month "
            "weekday, e.g. '0 9 * * 1-5' or '0 9 * * mon-fri'"
        )
    try:
        return CronSim(" ".join(fields), start, reverse=reverse)
    except CronSimError as exc:
        name = str(exc).removeprefix("Bad ").strip()
        if name in _FIELDS:
            index, what = _FIELDS[name]
            raise ValueError(f"{expression!r}: {fields[index]} is not a valid {what}") from None
        raise ValueError(f"{expression!r}: {exc}") from None


def cron(expression: str) -> Callable[[datetime], bool]:
    """A matcher for a five-field cron expression (minute hour day month weekday): whether a
    minute is a scheduled one. Raises ValueError, saying which field is wrong, for a bad one."""
    _parsed(expression, datetime(2000, 1, 1, tzinfo=UTC))

    def matches(when: datetime) -> bool:
        minute = when.astimezone(UTC).replace(second=0, microsecond=0)
        tz = when.tzinfo if isinstance(when.tzinfo, ZoneInfo) else zone("UTC")
        fire = _minute_at_or_before(expression, minute, tz)
        return fire is not None and fire.astimezone(UTC) == minute

    return matches


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


def _minute_at_or_before(expression: str, minute: datetime, tz: ZoneInfo) -> datetime | None:
    """The scheduled minute at or before `minute` (UTC), in `tz`."""
    # Going backwards, cronsim first steps one second back from where it starts: start one
    # second after the minute, so the minute itself is the first one it can find. The second is
    # added in UTC: local arithmetic would lose which of a repeated hour's two 02:30s it is.
    start = (minute + timedelta(seconds=1)).astimezone(tz)
    try:
        return next(_parsed(expression, start, reverse=True))
    except StopIteration:
        return None


def last_fire(expression: str, tz: ZoneInfo, now: datetime) -> datetime | None:
    """The latest scheduled minute at or before `now`, within MAX_PERIOD, in `tz`."""
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    fire = _minute_at_or_before(expression, minute, tz)
    if fire is None:
        return None
    at = fire.astimezone(UTC)
    if at <= minute - MAX_PERIOD or at > minute:
        return None
    return fire


def period_ending(expression: str, tz: ZoneInfo, end: datetime) -> Period:
    """From the scheduled time before `end` to `end` (a day, when none is found)."""
    # A minute back on the real clock (UTC): on a DST night the local clock's minute before may
    # not exist.
    before = last_fire(expression, tz, end.astimezone(UTC) - timedelta(minutes=1))
    return Period(before if before is not None else end - timedelta(days=1), end)
