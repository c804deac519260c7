"""The digest: its schedule, its content, and exactly one post per channel and period, whoever
fires it. Real SQLite (and PostgreSQL when CHATOPS_TEST_DATABASE_URL is set), the real
slack_sdk client against the fake Slack."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from bot.config import ApprovalsConfig, ConfigError, DigestConfig, PolicyConfig, load_policy
from bot.core.digest import chart_png, text
from bot.core.digests import Digests
from bot.schedule import Period, last_fire, period_ending, zone
from bot.store.db import make_engine, session_scope, upgrade
from bot.store.digests import DigestStore
from bot.store.models import DigestRow, FeedbackRow, FindingRow, ProposalRow, Run
from bot.store.stats import Stats
from bot.surfaces.slack.app import web_client
from bot.surfaces.slack.digest import SlackDigestSink
from bot.worker.jobs import TICK_TASK
from bot.worker.scheduler import Scheduler
from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.support.gitrepo import RepoBuilder
from tests.support.services import DATABASE_URL, fresh_postgres, needs_postgres

# Tuesday 2026-11-24, 09:00:30 UTC: the weekday 09:00 digest is due.
DUE = datetime(2026, 11, 24, 9, 0, 30, tzinfo=UTC)
POLICY = PolicyConfig(
    digest=DigestConfig(channel="C111", cron="0 9 * * 1-5", timezone="UTC"),
    approvals=ApprovalsConfig(ttl="4h"),
)
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'chatops.db'}"
    upgrade(url)
    return url


def seed(url: str) -> None:
    """A day of activity before DUE, and some the day before (for the trend)."""
    engine = make_engine(url)
    day = DUE - timedelta(hours=12)
    with session_scope(engine) as session:
        for n, status in enumerate(["done", "done", "done", "failed"]):
            session.add(
                Run(
                    id=f"run{n:09d}",
                    requester="U1",
                    surface="slack",
                    repo="shop",
                    target=f"feature/{n}",
                    status=status,
                    created_at=day,
                    duration_ms=1000 * (n + 1),
                )
            )
        session.flush()
        session.add(
            FindingRow(
                run_id="run000000000",
                repo="shop",
                fingerprint="f1",
                agent="code_review",
                source="bandit",
                category="security",
                severity="high",
                title="t",
                created_at=day,
            )
        )
        for n, status in enumerate(["applied", "rejected", "proposed", "proposed"]):
            session.add(
                ProposalRow(
                    run_id="run000000000",
                    pid=f"P{n}",
                    kind="patch",
                    agent="code_review",
                    title="t",
                    target="feature/0",
                    base_sha="0" * 40,
                    content="x",
                    content_sha256="0" * 64,
                    status=status,
                    # the last one was made 5 hours ago: past its 4h lifetime, so expired
                    created_at=DUE - timedelta(hours=5 if n == 3 else 1),
                )
            )
        votes = [(1, day), (1, day), (-1, day), (1, day - timedelta(days=1))]
        votes += [(-1, day - timedelta(days=1))] * 3
        for n, (value, at) in enumerate(votes):
            session.add(
                FeedbackRow(
                    run_id="run000000000",
                    fingerprint=f"f{n}",
                    user="U1",
                    vote=value,
                    repo="shop",
                    agent="code_review",
                    category="security",
                    rule="B101",
                    at=at,
                )
            )
    engine.dispose()


def digests(url: str, slack: FakeSlack, now: datetime = DUE) -> Digests:
    return Digests(
        Stats(make_engine(url)),
        DigestStore(make_engine(url)),
        POLICY,
        daily_budget_usd=2.0,
        sink=SlackDigestSink(web_client(BOT_TOKEN, slack.api_url)),
        now=lambda: now,
    )


def digest_messages(slack: FakeSlack) -> list[str]:
    return [m.text for m in slack.top_level("C111") if m.text.startswith("chatops digest")]


def fire_twice_at_once(url: str, slack: FakeSlack) -> list[str]:
    workers = [digests(url, slack), digests(url, slack)]
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def fire(worker: Digests) -> None:
        start.wait()
        outcomes.append(worker.post_scheduled().outcome)

    threads = [threading.Thread(target=fire, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return sorted(outcomes)


def check_posted_once(url: str) -> None:
    seed(url)
    with FakeSlack() as slack:
        assert fire_twice_at_once(url, slack) == ["already_posted", "posted"]
        assert len(digest_messages(slack)) == 1
        [chart] = slack.shared_files
        assert chart["content"].startswith(PNG) and chart["channel"] == "C111"
        # a restart (a new process, the same database) posts nothing more for this period
        assert digests(url, slack).post_scheduled().outcome == "already_posted"
        # the next day's digest is a new period
        tomorrow = digests(url, slack, DUE + timedelta(days=1))
        assert tomorrow.post_scheduled().outcome == "posted"
        assert len(digest_messages(slack)) == 2
        rows = DigestStore(make_engine(url)).rows("C111")
        assert [(r.period_key, r.status) for r in rows] == [
            ("2026-11-24T09:00Z", "posted"),
            ("2026-11-25T09:00Z", "posted"),
        ]


def test_two_workers_firing_at_once_post_one_digest_with_its_chart(sqlite_url: str) -> None:
    check_posted_once(sqlite_url)


@needs_postgres
def test_two_workers_firing_at_once_post_one_digest_on_postgres() -> None:
    assert DATABASE_URL
    with fresh_postgres() as url:
        upgrade(url)
        check_posted_once(url)


def test_a_failed_post_is_retried_and_a_dead_posters_claim_is_taken_over(
    sqlite_url: str,
) -> None:
    with FakeSlack(channels=("C999",)) as slack:  # the bot is not in C111 yet
        first = digests(sqlite_url, slack).post_scheduled()
        assert first.outcome == "failed" and "not_in_channel" in first.message
        assert DigestStore(make_engine(sqlite_url)).rows() == []  # the claim was given back
        slack.channels.add("C111")  # invited
        assert digests(sqlite_url, slack).post_scheduled().outcome == "posted"
    # a poster that died after claiming: its claim goes stale and another posts
    later = DUE + timedelta(days=1)
    store = DigestStore(make_engine(sqlite_url))
    assert store.claim("C111", "2026-11-25T09:00Z", "dead-worker", 600)
    with FakeSlack() as slack:
        assert digests(sqlite_url, slack, later).post_scheduled().outcome == "already_posted"
        with session_scope(store.engine) as session:
            session.execute(
                update(DigestRow).values(claimed_at=datetime.now(UTC) - timedelta(hours=1))
            )
        assert digests(sqlite_url, slack, later).post_scheduled().outcome == "posted"
        assert len(digest_messages(slack)) == 1


def test_the_digest_says_what_happened_against_the_previous_period(sqlite_url: str) -> None:
    seed(sqlite_url)
    with FakeSlack() as slack:
        poster = digests(sqlite_url, slack)
        data = poster.build(poster.latest_period())
    assert data.period == Period(DUE - timedelta(days=1, seconds=30), DUE - timedelta(seconds=30))
    said = text(data)
    assert "4 run(s): 3 done, 1 failed" in said
    assert "By severity: 1 high" in said
    # 2 of 3 votes up today, 1 of 4 the day before: 67% against 25%
    assert "code_review: 67% (2👍 1👎) ↑ 42 pts" in said
    assert "1 applied, 1 rejected, 1 expired, 1 pending" in said
    assert "of a $2.00 budget" in said
    assert "code_review: security B101 (1👎)" in said
    assert "run000000003 feature/3 in shop: 4.0 s" in said.splitlines()[-3]
    assert chart_png(data).startswith(PNG)


def test_schedule_periods_follow_the_cron_in_its_time_zone() -> None:
    berlin = zone("Europe/Berlin")
    monday = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 13:00 in Berlin
    fire = last_fire("0 9 * * 1-5", berlin, monday)
    assert fire == datetime(2026, 11, 23, 9, 0, tzinfo=berlin)
    # Monday's period starts at Friday's digest
    period = period_ending("0 9 * * 1-5", berlin, fire)
    assert period.start == datetime(2026, 11, 20, 9, 0, tzinfo=berlin)
    assert period.key == "2026-11-23T08:00Z"
    with FakeSlack() as slack:
        late = digests("sqlite://", slack, DUE + timedelta(hours=7))
        assert late.post_scheduled().outcome == "not_due"  # past the catch-up window


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('cron = "0 9 * *"', "digest.cron: Value error, '0 9 * *' is not a cron expression"),
        ('cron = "0 25 * * *"', "digest.cron: Value error, '0 25 * * *': 25 is not a valid"),
        ('timezone = "Mars/Olympus"', "digest.timezone: Value error, 'Mars/Olympus' is not a"),
    ],
)
def test_a_bad_schedule_is_refused_at_start(tmp_path: Path, section: str, message: str) -> None:
    policy = tmp_path / "chatops.toml"
    policy.write_text(f'[repos.shop]\npath = "{tmp_path}"\n\n[digest]\n{section}\n')
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("*", r"\*")):
        load_policy(policy, cwd=tmp_path)


def test_the_scheduler_tick_curates_hourly_and_posts_the_due_digest_once(
    tmp_path: Path, planted_repo: RepoBuilder
) -> None:
    from tests.test_feedback import ANA, BEN, analyzed, make_app

    app = make_app(tmp_path, planted_repo)
    try:
        report = analyzed(app)
        for voter in (ANA, BEN):
            app.service.feedback.vote(voter, report.run_id, "F1", -1, via="shell")
        with FakeSlack() as slack:
            poster = digests(str(app.engine.url), slack, DUE)
            clock = [DUE + timedelta(minutes=1)]
            scheduler = Scheduler(
                poster, app.service.feedback, app.service.follows, now=lambda: clock[0]
            )
            scheduler.tick()  # a process's first tick curates, and the digest is due
            assert [r.kind for r in app.service.feedback.learnings()] == ["suppress"]
            assert len(digest_messages(slack)) == 1
            for voter in (ANA, BEN):
                app.service.feedback.vote(voter, report.run_id, "F2", -1, via="shell")
            clock[0] = DUE + timedelta(minutes=30)
            scheduler.tick()
            assert len(app.service.feedback.learnings()) == 1  # within the hour: not curated again
            clock[0] = DUE + timedelta(minutes=61)  # a late tick after the hour still curates
            scheduler.tick()
            assert [r.kind for r in app.service.feedback.learnings()] == ["suppress", "suppress"]
            assert len(digest_messages(slack)) == 1  # the same period: not posted again
        assert TICK_TASK in {task.name for task in app.jobs.huey._registry.periodic_tasks}
    finally:
        app.close()
