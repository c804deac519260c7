"""`chatops digest --dry-run` says which period the digest covers and why (the schedule's last
completed period), and what came after it: runs made a minute ago are not in it, and it says
so rather than leaving "0 run(s)" to puzzle over. Real SQLite; the command in this process."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from bot.cli import app as cli
from bot.config import ApprovalsConfig, DigestConfig, PolicyConfig
from bot.core.digest import text
from bot.core.digests import Digests
from bot.store.db import make_engine, session_scope, upgrade
from bot.store.digests import DigestStore
from bot.store.models import Run
from bot.store.stats import Stats
from bot.surfaces.slack.app import web_client
from bot.surfaces.slack.digest import SlackDigestSink
from tests.support.fakes.slack_api import BOT_TOKEN

# Tuesday 2026-11-24 09:05 UTC: the weekday 09:00 digest covers Monday 09:00 to today 09:00.
NOW = datetime(2026, 11, 24, 9, 5, tzinfo=UTC)


def add_runs(url: str, *times: datetime) -> None:
    with session_scope(make_engine(url)) as session:
        for n, at in enumerate(times):
            session.add(
                Run(
                    id=f"run{n:09d}",
                    requester="U1",
                    surface="slack",
                    repo="shop",
                    target="f",
                    status="done",
                    created_at=at,
                )
            )


def digests(url: str, cron: str = "0 9 * * 1-5", channel: str = "C111") -> Digests:
    policy = PolicyConfig(
        digest=DigestConfig(channel=channel, cron=cron, timezone="UTC"),
        approvals=ApprovalsConfig(ttl="4h"),
    )
    return Digests(
        Stats(make_engine(url)),
        DigestStore(make_engine(url)),
        policy,
        daily_budget_usd=None,
        # never called here: explain() and build() post nothing
        sink=SlackDigestSink(web_client(BOT_TOKEN, "http://127.0.0.1:9/api/")),
        now=lambda: NOW,
    )


def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade(url)
    return url


def test_runs_after_the_period_are_said_to_be_in_the_next_digest(tmp_path: Path) -> None:
    url = database(tmp_path)
    add_runs(url, NOW - timedelta(hours=3), NOW - timedelta(minutes=4), NOW - timedelta(minutes=1))
    made = digests(url)
    period = made.latest_period()
    assert made.explain(period) == [
        "Period: Mon 23 Nov 09:00 – Tue 24 Nov 09:00 UTC.",
        "Why: the schedule '0 9 * * 1-5' (UTC) last fired at Tue 24 Nov 09:00, before now "
        "(Tue 24 Nov 09:05); a digest covers the period from one scheduled time to the next, "
        "so it ends there.",
        "2 run(s) since Tue 24 Nov 09:00, not in this digest: in the next digest.",
    ]
    assert "1 run(s): 1 done" in text(made.build(period))


def test_nothing_after_the_period_says_nothing_of_it_and_a_posted_one_says_so(
    tmp_path: Path,
) -> None:
    url = database(tmp_path)
    add_runs(url, NOW - timedelta(hours=3))
    made = digests(url)
    period = made.latest_period()
    lines = made.explain(period)
    assert len(lines) == 2 and not any("since" in line for line in lines)
    assert made.store.claim("C111", period.key, "w1", 600)
    made.store.mark_posted("C111", period.key, "w1", "1.2")
    assert made.explain(period)[-1] == "Already posted to C111: posting it again posts nothing."


def test_a_schedule_that_did_not_fire_lately_says_what_it_shows_instead(tmp_path: Path) -> None:
    made = digests(database(tmp_path), cron="0 9 1 1 *")  # New Year's Day only
    period = made.latest_period()
    assert period.end == NOW
    assert made.explain(period)[1] == (
        "Why: the schedule '0 9 1 1 *' (UTC) did not fire in the 35 days before now "
        "(Tue 24 Nov 09:05), so this is the day before it."
    )


def test_the_command_prints_the_why_on_stderr_and_the_digest_on_stdout(tmp_path: Path) -> None:
    data, policy = tmp_path / "data", tmp_path / "chatops.toml"
    policy.write_text(
        f'[repos.shop]\npath = "{tmp_path}"\n\n[digest]\ncron = "0 9 * * *"\ntimezone = "UTC"\n'
    )
    env: dict[str, str | None] = {
        key: None for key in os.environ if key.startswith(("CHATOPS_", "ANTHROPIC_", "SLACK_"))
    }
    env.update(CHATOPS_DATA_DIR=str(data), CHATOPS_CONFIG=str(policy), DATABASE_URL=None)
    runner = CliRunner()
    first = runner.invoke(cli, ["digest", "--dry-run"], env=env)  # makes the store
    assert first.exit_code == 0, first.output
    # A run made now, and the digest of two days ago: the run is after its period.
    add_runs(f"sqlite:///{data / 'chatops.db'}", datetime.now(UTC))
    at = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    done = runner.invoke(cli, ["digest", "--dry-run", "--at", at], env=env)
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("chatops digest") and "0 run(s): none" in done.stdout
    why = done.stderr.splitlines()
    assert why[0].startswith("Period: ") and why[1].startswith("Why: the schedule '0 9 * * *'")
    assert "before --at (" in why[1]
    assert "1 run(s) since " in why[2] and why[2].endswith("in later digests.")
