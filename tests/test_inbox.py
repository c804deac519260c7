"""A Slack delivery that was acknowledged is never lost (issue 14, item 13).

Each delivery is recorded in the inbox before its ack, in the insert that is also its
de-duplication; a process that dies after the ack leaves the row for a reaper, which handles it
once. The kill test kills a real `chatops serve` with SIGKILL while it waits on Slack, after
the ack and before the decision, and a `chatops worker` started afterwards finishes the click."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlalchemy import update

from bot.app import Runtime, build_app
from bot.core.actor import Actor
from bot.core.commands import AnalyzeBranch
from bot.settings import Settings
from bot.store.db import session_scope
from bot.store.inbox import InboxStore
from bot.store.models import InboxRow, Run
from bot.store.types import utcnow
from bot.store.workers import WorkerStore
from bot.surfaces.slack.blocks import report_blocks
from bot.surfaces.slack.inbox import MAX_ATTEMPTS, SlackInbox
from bot.surfaces.slack.listeners import handlers
from bot.worker.reaper import Reaper
from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.support.gitrepo import RepoBuilder
from tests.support.processes import clean_env, start_worker, stop, wait_for
from tests.test_slack import SECRET, TESTDATA, free_port, sign

UNUSED = "import json\nimport os\nimport sys\n\n\ndef main():\n    return sys.argv\n"


@dataclass
class Deployment:
    root: Path
    repo: RepoBuilder
    policy: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    def settings(self, slack: FakeSlack | None = None) -> Settings:
        extra: dict[str, Any] = {}
        if slack is not None:
            extra = {"slack_bot_token": BOT_TOKEN, "slack_api_url": slack.api_url}
        return Settings(chatops_data_dir=self.data, chatops_config=self.policy, **extra)

    def env(self, slack: FakeSlack, **more: str) -> dict[str, str]:
        return clean_env(
            CHATOPS_DATA_DIR=str(self.data),
            CHATOPS_CONFIG=str(self.policy),
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=slack.api_url,
            **more,
        )


def make_deployment(tmp_path: Path, repo: RepoBuilder) -> Deployment:
    """`shop` with a branch adding unused imports, and U222 as its approver."""
    repo.branch("feature/imports")
    repo.commit({"shop/cli.py": UNUSED})
    repo.checkout("main")
    policy = tmp_path / "chatops.toml"
    policy.write_text(f'[repos.shop]\npath = "{repo.root}"\n\n[approvals]\napprovers = ["U222"]\n')
    return Deployment(tmp_path, repo, policy)


@pytest.fixture
def deployment(tmp_path: Path, repo: RepoBuilder) -> Deployment:
    return make_deployment(tmp_path, repo)


@pytest.fixture
def app(deployment: Deployment) -> Iterator[Runtime]:
    built = build_app(deployment.settings())
    try:
        yield built
    finally:
        built.close()


def _inbox(app: Runtime, slack: FakeSlack) -> SlackInbox:
    client = WebClient(token=BOT_TOKEN, base_url=slack.api_url)
    return SlackInbox(
        InboxStore(app.engine),
        client,
        handlers(app.service),
        worker="w-test",
        lease_s=60,
    )


def _command(slack: FakeSlack, text: str, trigger: str) -> dict[str, Any]:
    return {
        "command": "/agent",
        "text": text,
        "user_id": "W111",
        "team_id": "T111",
        "channel_id": "C111",
        "trigger_id": trigger,
        "response_url": slack.response_url(),
    }


def _left_by_a_dead_process(app: Runtime, key: str) -> None:
    """The row as a process killed after the ack leaves it: pending, its lease run out."""
    with session_scope(app.engine) as session:
        session.execute(
            update(InboxRow)
            .where(InboxRow.key == key)
            .values(status="pending", lease_until=utcnow() - timedelta(seconds=1))
        )


class _Killed(BaseException):
    """The process ends here: nothing after this line of the handling runs."""


def _record_only(inbox: SlackInbox, kind: str, key: str, body: dict[str, Any]) -> None:
    """Record and ack, then die before the handler does anything."""
    acks: list[str] = []

    def killed(delivery: object) -> None:
        raise _Killed

    inbox.handlers, saved = {kind: killed}, inbox.handlers
    try:
        inbox.receive(kind, key, body, lambda: acks.append("ack"), lambda: acks.append("down"))
    except _Killed:
        pass
    finally:
        inbox.handlers = saved
    assert acks == ["ack"]
    row = inbox.store.get(key)
    assert row is not None and row.status == "pending"


def test_a_retried_delivery_is_recorded_once_and_handled_once(app: Runtime) -> None:
    with FakeSlack() as slack:
        inbox = _inbox(app, slack)
        body = _command(slack, "analyze branch feature/imports", "1.1.a")
        acks: list[str] = []
        for _ in range(2):  # Slack's retry of the same delivery
            inbox.receive("command", "slack:command:1.1.a", body, lambda: acks.append("ack"), list)
        assert acks == ["ack", "ack"]  # both acked, in time
        assert [r.target for r in app.store.recent()] == ["feature/imports"]
        assert len(slack.top_level()) == 1
        row = inbox.store.get("slack:command:1.1.a")
        assert row is not None and row.status == "done" and row.attempts == 1


def test_a_command_acked_by_a_dead_process_is_handled_by_the_reaper_once(app: Runtime) -> None:
    with FakeSlack() as slack:
        inbox = _inbox(app, slack)
        key = "slack:command:2.2.b"
        _record_only(inbox, "command", key, _command(slack, "analyze branch feature/imports", "2"))
        assert app.store.recent() == [] and inbox.redeliver() == []  # its lease still runs
        _left_by_a_dead_process(app, key)
        assert inbox.redeliver() == [key]
        [run] = app.store.recent()
        assert run.target == "feature/imports" and run.message is not None
        assert len(slack.top_level()) == 1  # the parent message, once
        assert inbox.redeliver() == []


def test_a_process_that_died_after_starting_the_run_gets_its_message_posted(app: Runtime) -> None:
    """The run was created, the parent never posted: the replay posts it, starts nothing."""
    with FakeSlack() as slack:
        inbox = _inbox(app, slack)
        key = "slack:command:3.3.c"
        body = _command(slack, "analyze branch feature/imports", "3")
        actor = Actor("W111", "slack", team="T111")
        app.service.request_analysis(
            actor, AnalyzeBranch("feature/imports"), event_key=key, place="C111"
        )
        _record_only(inbox, "command", key, body)
        _left_by_a_dead_process(app, key)
        assert inbox.redeliver() == [key]
        [run] = app.store.recent()
        assert run.message is not None and len(slack.top_level()) == 1


def test_a_click_whose_decision_landed_before_the_crash_is_not_decided_twice(
    app: Runtime, deployment: Deployment
) -> None:
    with FakeSlack() as slack:
        inbox = _inbox(app, slack)
        run_id, ref, value = _finished_run(app)
        body = _click_body(slack, value, message_ts=_report_message(slack, app, run_id))
        key = "slack:action:U222:1700000000.1:proposal_approve"
        acks: list[str] = []
        app.service.approvals.enqueue_apply = lambda pid: None  # type: ignore[union-attr]
        inbox.receive("proposal_approve", key, body, lambda: acks.append("ack"), list)
        _left_by_a_dead_process(app, key)  # died after the decision, before marking it done
        assert inbox.redeliver() == [key]
        granted = [r for r in app.service.audit(run_id) if r.outcome == "granted"]
        assert len(granted) == 1
        ignored = [r for r in app.service.audit(run_id) if r.outcome == "ignored"]
        assert len(ignored) == 1 and "duplicate delivery" in ignored[0].detail
        # The replay says what became of it, as the first try did: no refusal to the approver.
        assert not [r for r in slack.responses if ":no_entry:" in r.get("text", "")]
        edits = [c for c in slack.called("chat.update") if "Approved by <@U222>" in str(c.args)]
        assert len(edits) == 2  # the first try's, and the replay's (the same words)


def test_a_delivery_that_keeps_failing_is_given_up_and_the_user_told(app: Runtime) -> None:
    with FakeSlack() as slack:
        inbox = _inbox(app, slack)
        key = "slack:command:4.4.d"
        _record_only(inbox, "command", key, _command(slack, "status", "4"))
        with session_scope(app.engine) as session:
            session.execute(
                update(InboxRow)
                .where(InboxRow.key == key)
                .values(attempts=MAX_ATTEMPTS, lease_until=utcnow() - timedelta(seconds=1))
            )
        assert inbox.redeliver() == []
        row = inbox.store.get(key)
        assert row is not None and row.status == "failed"
        assert any("could not handle this" in r["text"] for r in slack.responses)
        assert inbox.redeliver() == []  # said once


def _finished_run(app: Runtime) -> tuple[str, str, str]:
    requested = app.service.request_analysis(
        Actor("W111", "slack", team="T111"), AnalyzeBranch("feature/imports"), place="C111"
    )
    app.executor(requested.run.id)
    [proposal] = app.service.proposals(requested.run.id)
    ref = f"{requested.run.id}/{proposal.pid}"
    return requested.run.id, ref, f"{ref}:{proposal.content_sha256[:16]}"


def _report_message(slack: FakeSlack, app: Runtime, run_id: str) -> str:
    """The report with its buttons, as the notifier would have posted it."""
    report = app.store.report(run_id)
    assert report is not None
    blocks, _ = report_blocks(report)
    client = WebClient(token=BOT_TOKEN, base_url=slack.api_url)
    posted = client.chat_postMessage(
        channel="C111", text="Report for feature/imports", blocks=blocks
    )
    return str(posted["ts"])


def _click_body(slack: FakeSlack, value: str, *, message_ts: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        (TESTDATA / "block_actions_button_in_thread.json").read_text()
    )
    payload.update(
        user={"id": "U222", "team_id": "T111"},
        team={"id": "T111"},
        channel={"id": "C111"},
        response_url=slack.response_url(),
    )
    payload["container"].update(channel_id="C111", message_ts=message_ts)
    [message] = [m for m in slack.messages if m.ts == message_ts]
    payload["message"].update(ts=message_ts, text=message.text, blocks=message.blocks)
    payload["actions"] = [
        {
            "action_id": "proposal_approve",
            "block_id": f"proposal:{value.split(':')[0]}",
            "value": value,
            "type": "button",
            "action_ts": "1700000000.100000",
        }
    ]
    return payload


@pytest.mark.slow
def test_a_click_acked_by_a_server_killed_before_deciding_is_finished_by_a_worker(
    deployment: Deployment,
) -> None:
    base = deployment.repo.head("feature/imports")
    port = free_port()
    first = build_app(deployment.settings())
    with FakeSlack() as slack:
        try:
            run_id, ref, value = _finished_run(first)
            message_ts = _report_message(slack, first, run_id)
        finally:
            first.close()
        env = deployment.env(slack, CHATOPS_LEASE_S="2")
        server = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        worker = None
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: _healthy(url, server), timeout=30, what="chatops serve")
            release = slack.hold("auth.test")  # the decision asks Slack for the workspace
            body = _click_body(slack, value, message_ts=message_ts)
            encoded = f"payload={urllib.request.quote(json.dumps(body))}".encode()
            started = time.monotonic()
            request = urllib.request.Request(
                f"{url}/slack/events",
                data=encoded,
                method="POST",
                headers={"content-type": "application/x-www-form-urlencoded", **sign(encoded)},
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
            assert time.monotonic() - started < 3  # acked within Slack's 3 s
            slack.wait_for(lambda: "auth.test" in slack.held)
            server.send_signal(signal.SIGKILL)  # after the ack, before the decision
            server.wait(timeout=10)
            release.set()

            looking = build_app(deployment.settings())
            try:
                [proposal] = looking.service.proposals(run_id)
                assert proposal.status == "proposed"  # the click did nothing yet
                assert not [r for r in looking.service.audit(run_id) if r.outcome == "granted"]
            finally:
                looking.close()

            worker = start_worker(env)
            slack.wait_for(lambda: [m for m in slack.messages if f"{ref} applied" in m.text], 60)
        finally:
            if server.poll() is None:
                server.kill()
            if worker is not None:
                stop(worker)
        after = build_app(deployment.settings())
        try:
            [proposal] = after.service.proposals(run_id)
            assert proposal.status == "applied"
            audit = [(r.actor, r.action, r.outcome) for r in after.service.audit(run_id)]
            assert audit.count(("U222", "approve_proposal", "granted")) == 1
            assert audit.count(("chatops", "apply_proposal", "ok")) == 1
        finally:
            after.close()
        head = deployment.repo.head("feature/imports")
        assert deployment.repo.git("rev-list", "--count", f"{base}..{head}").strip() == "1"
        # The approver is told: the buttons' message says who approved it.
        edited = [c for c in slack.called("chat.update") if "Approved by <@U222>" in str(c.args)]
        assert len(edited) == 1


def _healthy(url: str, server: subprocess.Popen[bytes]) -> bool:
    if server.poll() is not None:
        raise AssertionError(server.stderr.read().decode() if server.stderr else "serve exited")
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return response.read() == b"ok"
    except OSError:
        return False


def test_a_reaper_step_that_fails_does_not_stop_the_others(app: Runtime) -> None:
    """The queue is away (enqueuing fails): the pass still redelivers what it can."""
    calls: list[str] = []

    def away(run_id: str) -> None:
        calls.append(f"enqueue {run_id}")
        raise ConnectionError("the queue is away")

    reaper = Reaper(
        app.settings,
        app.store,
        app.service.approvals.proposals,
        WorkerStore(app.engine),
        process="p",
        kind="worker",
        enqueue=away,
        enqueue_apply=lambda pid: None,
        reconcile_applies=lambda older: calls.append("applies") or [],  # type: ignore[func-returns-value]
        redeliver_reports=lambda older: calls.append("reports") or [],  # type: ignore[func-returns-value]
        redeliver_deliveries=lambda: calls.append("deliveries") or [],  # type: ignore[func-returns-value]
    )
    with session_scope(app.engine) as session:  # a run whose task was lost long ago
        session.add(
            Run(
                id="lost1",
                requester="U",
                surface="cli",
                repo="r",
                target="b",
                enqueued_at=utcnow() - timedelta(hours=1),
            )
        )
    reaper.reap_once()
    assert calls == ["enqueue lost1", "applies", "reports", "deliveries"]


def test_a_handler_that_breaks_ends_the_delivery_and_says_so(app: Runtime) -> None:
    """Not a person's mistake: the row ends failed (not replayed forever) and the user hears."""
    with FakeSlack() as slack:
        inbox = _inbox(app, slack)

        def broken(delivery: object) -> None:
            raise KeyError("a field Slack did not send")

        inbox.handlers = {"command": broken}
        key = "slack:command:5.5.e"
        inbox.receive("command", key, _command(slack, "status", "5"), list, list)
        row = inbox.store.get(key)
        assert row is not None and row.status == "failed" and "KeyError" in (row.error or "")
        assert any("Something went wrong on my side" in r["text"] for r in slack.responses)
        assert inbox.redeliver() == []


def test_with_the_store_down_nothing_is_recorded_and_the_user_is_told(
    app: Runtime, tmp_path: Path
) -> None:
    """The database cannot be opened: the delivery is acked with the store-down answer and its
    handler never runs (nothing was started, as the answer says)."""
    from bot.store.db import make_engine

    gone = make_engine(f"sqlite:///{tmp_path / 'no-such-folder' / 'chatops.db'}")
    with FakeSlack() as slack:
        inbox = _inbox(app, slack)
        inbox.store = InboxStore(gone)
        ran: list[str] = []
        inbox.handlers = {"command": lambda delivery: ran.append("ran")}
        answers: list[str] = []
        inbox.receive(
            "command",
            "slack:command:6.6.f",
            _command(slack, "status", "6"),
            lambda: answers.append("ack"),
            lambda: answers.append("store down"),
        )
        assert answers == ["store down"] and ran == []


def test_a_store_that_goes_away_mid_delivery_leaves_it_pending_and_says_so(app: Runtime) -> None:
    """Recorded, then the store fails while handling: the row stays pending for the reaper,
    and the user hears it will be acted on once the store is back."""
    from sqlalchemy.exc import OperationalError

    with FakeSlack() as slack:
        inbox = _inbox(app, slack)

        def store_away(delivery: object) -> None:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))

        inbox.handlers = {"command": store_away}
        key = "slack:command:7.7.g"
        inbox.receive("command", key, _command(slack, "status", "7"), list, list)
        row = inbox.store.get(key)
        assert row is not None and row.status == "pending"
        assert any("I will act on this when it is back" in r["text"] for r in slack.responses)
