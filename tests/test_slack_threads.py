"""Slack: a re-run of a branch updates its thread instead of reposting. The second run's parent
goes in the first run's thread, the first parent says it was superseded, and the answer is a
delta (new, resolved, still open) with the full report as a file only when asked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import Runtime, build_app
from bot.store.inbox import InboxStore
from bot.surfaces.slack.blocks import FULL_REPORT
from bot.surfaces.slack.inbox import SlackInbox
from bot.surfaces.slack.listeners import handlers
from tests.support.fakes.slack_api import FakeSlack, Message
from tests.support.gitrepo import RepoBuilder
from tests.support.testdata import button_click
from tests.test_inbox import Deployment, _command, make_deployment

FIXED = "import json\nimport sys\n\n\ndef main():\n    return sys.argv\n"  # `os` used no more
WORSE = "def run(expression):\n    return eval(expression)\n"


@pytest.fixture
def deployment(tmp_path: Path, repo: RepoBuilder) -> Deployment:
    return make_deployment(tmp_path, repo)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def app(deployment: Deployment, slack: FakeSlack) -> Iterator[Runtime]:
    built = build_app(deployment.settings(slack))
    try:
        yield built
    finally:
        built.close()


def _inbox(app: Runtime, slack: FakeSlack) -> SlackInbox:
    assert app.inbox is not None
    return SlackInbox(
        InboxStore(app.engine), app.inbox.client, handlers(app.service), worker="w", lease_s=60
    )


def _analyze(app: Runtime, slack: FakeSlack, trigger: str) -> str:
    """`/agent analyze branch feature/imports` in C111, and its run carried out here."""
    body = _command(slack, "analyze branch feature/imports", trigger)
    _inbox(app, slack).receive("command", f"slack:command:{trigger}", body, list, list)
    run = app.store.recent(limit=1)[0]
    app.executor(run.id)
    return run.id


def _text(message: Message) -> str:
    return json.dumps(message.blocks)


def test_a_rerun_posts_a_delta_in_the_branch_thread_and_marks_the_first_superseded(
    app: Runtime, slack: FakeSlack, deployment: Deployment
) -> None:
    first_run = _analyze(app, slack, "1.1")
    [first_parent] = slack.top_level()
    [first_report] = slack.thread(first_parent.ts)
    assert "Report: feature/imports" in _text(first_report)

    deployment.repo.checkout("feature/imports")
    deployment.repo.commit({"shop/cli.py": FIXED, "shop/calc.py": WORSE})
    deployment.repo.checkout("main")
    second_run = _analyze(app, slack, "2.2")

    assert slack.top_level() == [first_parent]  # nothing new at the top of the channel
    replies = slack.thread(first_parent.ts)
    assert [m.ts for m in replies[:1]] == [first_report.ts]
    second_parent, delta = replies[1], replies[2]
    assert f"run `{second_run}`" in _text(second_parent)
    assert f"Superseded by run `{second_run}`" in _text(first_parent)
    assert f"run `{first_run}`" in _text(first_parent)

    shown = _text(delta)
    assert "Update: `feature/imports`" in shown and "resolved since" in shown
    assert "*New*" in shown and "B307" in shown  # the eval, in full, with its vote menu
    assert "finding_vote" in shown
    assert "*Resolved*" in shown and "`os` imported but unused" in shown
    # Still open: the unused `json`, linked to the report that first showed it.
    assert "*Still open* (2)" in shown and "`json` imported but unused" in shown
    assert f"p{first_report.ts.replace('.', '')}|first shown>" in shown
    report = app.store.report(second_run)
    assert report is not None and report.previous is not None
    assert report.previous.run_id == first_run
    assert slack.shared_files == []  # the full report only when asked

    # Asked for: the full report as a file, in the same thread.
    click = button_click(FULL_REPORT, f"report:{second_run}", response_url=slack.response_url())
    guest = {**click, "user": {"id": "W999", "team_id": "TGUEST"}}
    guest["actions"] = [{**click["actions"][0], "action_ts": "9.8"}]
    _inbox(app, slack).receive(FULL_REPORT, "slack:action:full:9.8", guest, list, list)
    assert slack.shared_files == []  # a Slack Connect guest gets nothing
    assert any("own members" in r["text"] for r in slack.responses)
    _inbox(app, slack).receive(FULL_REPORT, "slack:action:full:9.9", click, list, list)
    [upload] = slack.shared_files
    assert upload["thread_ts"] == first_parent.ts
    content = upload["content"]
    text = content.decode() if isinstance(content, bytes) else content
    assert "## Resolved since" in text and "F401" in text


def test_a_branch_in_another_channel_starts_its_own_thread(
    app: Runtime, slack: FakeSlack, deployment: Deployment
) -> None:
    slack.channels.add("C222")
    _analyze(app, slack, "1.1")
    body = _command(slack, "analyze branch feature/imports", "3.3")
    body["channel_id"] = "C222"
    _inbox(app, slack).receive("command", "slack:command:3.3", body, list, list)
    run = app.store.recent(limit=1)[0]
    assert run.place == "C222" and run.thread is None
    assert len(slack.top_level("C222")) == 1
