"""Following a branch: each new head is analyzed once, however many instances check, and the
delta goes in the branch's thread; the daily budget bounds it; the policy can follow patterns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot.app import Runtime, build_app
from bot.core.actor import Actor
from bot.core.commands import CommandError, Follow, Unfollow, parse
from bot.core.service import Asked
from bot.settings import Settings
from bot.store.inbox import InboxStore
from bot.surfaces.slack.inbox import SlackInbox
from bot.surfaces.slack.listeners import handlers
from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.support.gitrepo import RepoBuilder
from tests.test_feedback import spend
from tests.test_inbox import _command

ANA = Actor("W111", "slack", team="T111")


def test_the_grammar() -> None:
    assert parse("follow branch feature/x in shop") == Follow("feature/x", "shop")
    assert parse("follow") == Follow()
    assert parse("/agent unfollow branch feature/x") == Unfollow("feature/x")
    with pytest.raises(CommandError, match="Say which branch to unfollow"):
        parse("unfollow")
    with pytest.raises(CommandError, match="Unexpected 'against'"):
        parse("follow branch x against main")


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def _policy(tmp_path: Path, repo: RepoBuilder, extra: str = "") -> Path:
    policy = tmp_path / "chatops.toml"
    policy.write_text(f'[repos.shop]\npath = "{repo.root}"\n{extra}')
    return policy


def _runtime(tmp_path: Path, policy: Path, slack: FakeSlack, **settings: Any) -> Runtime:
    return build_app(
        Settings(
            chatops_data_dir=tmp_path / "data",
            chatops_config=policy,
            slack_bot_token=BOT_TOKEN,
            slack_api_url=slack.api_url,
            **settings,
        )
    )


def _push(repo: RepoBuilder, branch: str, files: dict[str, str]) -> None:
    repo.checkout(branch)
    repo.commit(files)
    repo.checkout("main")


@pytest.fixture
def branch(repo: RepoBuilder) -> RepoBuilder:
    repo.branch("feature/pay")
    repo.commit({"shop/pay.py": "import os\n\n\ndef pay(x):\n    return x\n"})
    repo.checkout("main")
    return repo


def test_a_new_head_is_analyzed_once_across_two_instances_and_posted_in_the_thread(
    tmp_path: Path, branch: RepoBuilder, slack: FakeSlack
) -> None:
    policy = _policy(tmp_path, branch)
    one, two = _runtime(tmp_path, policy, slack), _runtime(tmp_path, policy, slack)
    try:
        inbox = SlackInbox(
            InboxStore(one.engine),
            slack_client(slack),
            handlers(one.service),
            worker="w",
            lease_s=60,
        )
        # Analyzed once by hand, then followed from the same channel.
        body = _command(slack, "analyze branch feature/pay", "1.1")
        inbox.receive("command", "slack:command:1.1", body, list, list)
        first = one.store.recent(limit=1)[0]
        one.executor(first.id)
        follow = _command(slack, "follow branch feature/pay", "2.2")
        inbox.receive("command", "slack:command:2.2", follow, list, list)
        assert any("Following `feature/pay` in shop" in r["text"] for r in slack.responses)

        assert one.service.follows.check() == [] and two.service.follows.check() == []
        _push(branch, "feature/pay", {"shop/calc.py": "def run(e):\n    return eval(e)\n"})
        started = one.service.follows.check() + two.service.follows.check()
        assert len(started) == 1  # one run for the new head, whoever checked
        assert one.service.follows.check() == []
        [run] = [r for r in one.store.recent(limit=5) if r.id == started[0]]
        assert run.place == "C111" and run.thread == first.message  # in the branch's thread
        one.executor(run.id)
        [parent] = slack.top_level()
        replies = slack.thread(parent.ts)
        assert f"Superseded by run `{run.id}`" in json.dumps(parent.blocks)
        assert "Update: `feature/pay`" in json.dumps(replies[-1].blocks)
        assert "B307" in json.dumps(replies[-1].blocks)

        said = one.service.carry_out(ANA, Follow(), Asked(place="C111"))
        assert [(f.branch, f.head) for f in said] == [  # type: ignore[attr-defined]
            ("feature/pay", branch.git("rev-parse", "feature/pay").strip())
        ]
        gone = one.service.carry_out(ANA, Unfollow("feature/pay"), Asked(place="C111"))
        assert gone == "No longer following `feature/pay` in shop here."
        _push(branch, "feature/pay", {"README.md": "more\n"})
        assert one.service.follows.check() == []
    finally:
        one.close()
        two.close()


def test_followed_runs_are_bounded_by_the_daily_budget(
    tmp_path: Path, branch: RepoBuilder, slack: FakeSlack
) -> None:
    app = _runtime(tmp_path, _policy(tmp_path, branch), slack, chatops_daily_budget_usd=0.01)
    try:
        app.service.carry_out(ANA, Follow("feature/pay"), Asked(place="C111"))
        _push(branch, "feature/pay", {"shop/more.py": "X = 1\n"})
        earlier = app.service.request_analysis(ANA, parse_branch("feature/pay")).run
        spend(app, earlier.id, 0.02)  # today's budget is spent
        assert app.service.follows.check() == [] and app.service.follows.check() == []
        [row] = app.service.follows.listed("C111")
        assert row.head != branch.git("rev-parse", "feature/pay").strip()  # tried again later
        # Asked again at every check: logged, not an audit row each time (the digest counts
        # the refusals of people).
        with app.engine.connect() as connection:
            refused = connection.execute(
                text("SELECT count(*) FROM audit_events WHERE action = 'budget_refused'")
            ).scalar()
        assert refused == 0
    finally:
        app.close()


def test_the_policy_follows_branches_by_pattern(
    tmp_path: Path, repo: RepoBuilder, slack: FakeSlack
) -> None:
    repo.branch("release/1.0")
    repo.commit({"shop/v.py": "V = 1\n"})
    repo.checkout("main")
    repo.branch("feature/other")
    repo.commit({"shop/o.py": "O = 1\n"})
    repo.checkout("main")
    extra = '\n[follow]\nbranches = ["release/*"]\nchannel = "C111"\n'
    app = _runtime(tmp_path, _policy(tmp_path, repo, extra), slack)
    try:
        assert app.service.follows.check() == []  # first seen: from now on, changes are news
        assert [(f.branch, f.requester) for f in app.service.follows.listed("C111")] == [
            ("release/1.0", "policy")
        ]
        _push(repo, "release/1.0", {"shop/v.py": "V = 2\n"})
        [run_id] = app.service.follows.check()
        run = app.store.get(run_id)
        assert run is not None and run.target == "release/1.0" and run.message is not None
        assert len(slack.top_level()) == 1  # its parent, posted by the announcer
    finally:
        app.close()


def slack_client(slack: FakeSlack):  # type: ignore[no-untyped-def]
    from slack_sdk import WebClient

    return WebClient(token=BOT_TOKEN, base_url=slack.api_url)


def parse_branch(name: str):  # type: ignore[no-untyped-def]
    from bot.core.commands import AnalyzeBranch

    return AnalyzeBranch(name)


def test_a_repository_followed_in_several_places_is_fetched_once_per_check(
    tmp_path: Path, branch: RepoBuilder, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _runtime(tmp_path, _policy(tmp_path, branch), slack)
    try:
        slack.channels.add("C222")
        for place in ("C111", "C222"):
            app.service.carry_out(ANA, Follow("feature/pay"), Asked(place=place))
        prepared: list[str] = []
        real = app.service.follows.repos.prepare
        monkeypatch.setattr(
            app.service.follows.repos,
            "prepare",
            lambda name, config: prepared.append(name) or real(name, config),
        )
        app.service.follows.check()
        assert prepared == ["shop"]
    finally:
        app.close()


def test_a_followed_run_that_cannot_be_shown_is_cancelled_not_run_unseen(
    tmp_path: Path, repo: RepoBuilder, slack: FakeSlack
) -> None:
    """The policy names a channel the bot is not in: the new head's run cannot be posted, so
    it is cancelled (and logged) rather than run where nobody sees it."""
    repo.branch("release/2.0")
    repo.commit({"shop/v.py": "V = 1\n"})
    repo.checkout("main")
    extra = '\n[follow]\nbranches = ["release/*"]\nchannel = "CNOTIN"\n'
    app = _runtime(tmp_path, _policy(tmp_path, repo, extra), slack)
    try:
        app.service.follows.check()
        _push(repo, "release/2.0", {"shop/v.py": "V = 2\n"})
        [run_id] = app.service.follows.check()
        run = app.store.get(run_id)
        assert run is not None and run.status == "cancelled" and run.message is None
        assert slack.top_level("CNOTIN") == []
    finally:
        app.close()
