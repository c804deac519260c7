"""Cron expressions in a time zone (`bot/schedule.py`, read by cronsim): names, ranges, steps,
the nights the clock changes, and errors that name the setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import ConfigError, load_policy
from bot.schedule import MAX_PERIOD, cron, last_fire, period_ending, zone

UTC_ZONE = zone("UTC")
BERLIN = zone("Europe/Berlin")
MONDAY = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday; Berlin is on CET (UTC+1)


@pytest.mark.parametrize(
    ("expression", "now", "expected"),
    [
        # Day names, in either case, as a range, and as a list.
        ("0 9 * * mon-fri", MONDAY, datetime(2026, 11, 23, 9, 0, tzinfo=UTC)),
        ("0 9 * * MON-FRI", MONDAY, datetime(2026, 11, 23, 9, 0, tzinfo=UTC)),
        ("0 9 * * sat,sun", MONDAY, datetime(2026, 11, 22, 9, 0, tzinfo=UTC)),
        ("0 9 * * fri", MONDAY, datetime(2026, 11, 20, 9, 0, tzinfo=UTC)),
        # Numbers: 0 and 7 are both Sunday.
        ("0 9 * * 1-5", MONDAY, datetime(2026, 11, 23, 9, 0, tzinfo=UTC)),
        ("0 9 * * 7", MONDAY, datetime(2026, 11, 22, 9, 0, tzinfo=UTC)),
        ("0 9 * * 0", MONDAY, datetime(2026, 11, 22, 9, 0, tzinfo=UTC)),
        # Steps and ranges with steps.
        ("*/15 * * * *", MONDAY + timedelta(minutes=14), MONDAY),
        ("*/15 * * * *", MONDAY + timedelta(minutes=16), MONDAY + timedelta(minutes=15)),
        ("0 8-18/4 * * *", MONDAY, datetime(2026, 11, 23, 12, 0, tzinfo=UTC)),
        ("0 8-18/4 * * *", MONDAY - timedelta(minutes=1), datetime(2026, 11, 23, 8, 0, tzinfo=UTC)),
        # Month names, and a day of the month.
        (
            "30 8 1 jan,jul *",
            datetime(2026, 7, 20, tzinfo=UTC),
            datetime(2026, 7, 1, 8, 30, tzinfo=UTC),
        ),
        ("0 0 1 * *", MONDAY, datetime(2026, 11, 1, 0, 0, tzinfo=UTC)),
        # The minute itself is at or before now; seconds past it do not matter.
        ("0 12 * * *", MONDAY, MONDAY),
        ("0 12 * * *", MONDAY + timedelta(seconds=59), MONDAY),
        ("0 12 * * *", MONDAY - timedelta(seconds=1), MONDAY - timedelta(days=1)),
    ],
)
def test_the_last_fire_in_utc(expression: str, now: datetime, expected: datetime) -> None:
    assert last_fire(expression, UTC_ZONE, now) == expected


def test_a_schedule_rarer_than_the_look_back_has_no_last_fire() -> None:
    # 29 February: none in the last 35 days of November 2026.
    assert last_fire("0 9 29 2 *", UTC_ZONE, MONDAY) is None
    yearly = last_fire("0 9 1 11 *", UTC_ZONE, MONDAY)
    assert yearly == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    assert last_fire("0 9 1 11 *", UTC_ZONE, MONDAY + MAX_PERIOD) is None


def test_times_are_the_zones_wall_clock() -> None:
    fire = last_fire("0 9 * * mon-fri", BERLIN, MONDAY)  # 13:00 in Berlin
    assert fire == datetime(2026, 11, 23, 9, 0, tzinfo=BERLIN)
    assert fire is not None and fire.astimezone(UTC).hour == 8
    period = period_ending("0 9 * * mon-fri", BERLIN, fire)
    assert period.start == datetime(2026, 11, 20, 9, 0, tzinfo=BERLIN)  # Friday's digest
    assert period.key == "2026-11-23T08:00Z"
    # In summer Berlin is UTC+2: the same line fires an hour earlier in UTC.
    summer = last_fire("0 9 * * mon-fri", BERLIN, datetime(2026, 7, 6, 12, 0, tzinfo=UTC))
    assert summer is not None and summer.astimezone(UTC) == datetime(2026, 7, 6, 7, 0, tzinfo=UTC)


def test_a_time_the_clock_skips_fires_right_after_the_jump() -> None:
    """Berlin springs forward on 29 March 2026 at 02:00 CET to 03:00 CEST: 02:30 does not exist
    that night, and a 02:30 schedule fires at 03:00 (as Debian's cron does)."""
    after = datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    fire = last_fire("30 2 * * *", BERLIN, after)
    assert fire is not None
    assert fire.astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
    before_the_jump = datetime(2026, 3, 29, 0, 59, tzinfo=UTC)  # 01:59 CET
    day_before = last_fire("30 2 * * *", BERLIN, before_the_jump)
    assert day_before is not None
    assert day_before.astimezone(UTC) == datetime(2026, 3, 28, 1, 30, tzinfo=UTC)
    # The period that ends at the jump starts at the day before's: a day less an hour.
    period = period_ending("30 2 * * *", BERLIN, fire)
    assert period.start.astimezone(UTC) == datetime(2026, 3, 28, 1, 30, tzinfo=UTC)


def test_a_time_the_clock_passes_twice_fires_once() -> None:
    """Berlin falls back on 25 October 2026 at 03:00 CEST to 02:00 CET: 02:30 comes twice, and
    a 02:30 schedule fires the first time only."""
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
    # (An ambiguous local time never equals a time of another zone: compare them in UTC.)
    once = last_fire("30 2 * * *", BERLIN, first + timedelta(minutes=5))
    assert once is not None and once.astimezone(UTC) == first
    again = last_fire("30 2 * * *", BERLIN, second + timedelta(minutes=5))
    assert again is not None and again.astimezone(UTC) == first
    # An every-15-minutes schedule keeps to the real clock through the repeated hour.
    quarter = last_fire("*/15 * * * *", BERLIN, second + timedelta(minutes=5))
    assert quarter is not None and quarter.astimezone(UTC) == second


def test_the_matcher_says_which_minutes_are_scheduled() -> None:
    weekdays = cron("0 9 * * mon-fri")
    assert weekdays(datetime(2026, 11, 23, 9, 0, 30, tzinfo=UTC))
    assert not weekdays(datetime(2026, 11, 23, 9, 1, tzinfo=UTC))
    assert not weekdays(datetime(2026, 11, 22, 9, 0, tzinfo=UTC))  # a Sunday


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 9 * *", "'0 9 * *' is not a cron expression: five fields"),
        ("0 9 * * * *", "'0 9 * * * *' is not a cron expression: five fields"),
        ("0 25 * * *", "'0 25 * * *': 25 is not a valid hour (0-23)"),
        ("60 9 * * *", "'60 9 * * *': 60 is not a valid minute (0-59)"),
        ("0 9 32 * *", "'0 9 32 * *': 32 is not a valid day of the month (1-31)"),
        ("0 9 * 13 *", "'0 9 * 13 *': 13 is not a valid month (1-12 or jan-dec)"),
        ("0 9 * * mon-frx", "'0 9 * * mon-frx': mon-frx is not a valid weekday"),
        ("0 9 * * fri-mon", "'0 9 * * fri-mon': fri-mon is not a valid weekday"),
        ("*/0 9 * * *", "'*/0 9 * * *': */0 is not a valid minute"),
    ],
)
def test_a_bad_expression_says_which_field(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=_literal(message)):
        cron(expression)


def test_the_policy_file_names_the_setting(tmp_path: Path) -> None:
    policy = tmp_path / "chatops.toml"
    policy.write_text(f'[repos.shop]\npath = "{tmp_path}"\n\n[digest]\ncron = "0 9 * * mon-frx"\n')
    with pytest.raises(ConfigError, match=_literal(f"{policy}: digest.cron: ")) as caught:
        load_policy(policy, cwd=tmp_path)
    assert "mon-frx is not a valid weekday" in str(caught.value)
    policy.write_text(f'[repos.shop]\npath = "{tmp_path}"\n\n[digest]\ncron = "0 9 * * mon-fri"\n')
    assert load_policy(policy, cwd=tmp_path).digest.cron == "0 9 * * mon-fri"


def _literal(text: str) -> str:
    import re

    return re.escape(text)
