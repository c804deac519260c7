"""Socket Mode end to end (issue 17, item 1): the real `slack_sdk` Socket Mode client, as
`chatops serve` runs it with SLACK_APP_TOKEN, against a fake Socket Mode endpoint on 127.0.0.1
(`tests/support/fakes/socket_mode.py`) whose URL the fake Web API hands out from
`apps.connections.open`. The endpoint sends `hello`, then envelopes built from Slack's real
payloads (../shared/testdata), measures each ack where Slack measures it (3 s), and can drop
the connection or ask for a refresh.

The fast tests run the app in this process (the composition root, the in-process consumer,
Bolt and the Socket Mode client, as `serve` builds them); the SIGTERM tests run `python -m bot
serve` and are slow."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app import Runtime, build_app
from bot.settings import Settings
from bot.store.inbox import InboxStore
from bot.store.types import utcnow
from bot.surfaces.slack.app import build_bolt_app, web_client
from bot.surfaces.slack.blocks import APPROVE
from bot.surfaces.slack.socket_mode import SocketMode
from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack, Message
from tests.support.fakes.socket_mode import APP_TOKEN, Envelope, SocketModeEndpoint
from tests.support.gitrepo import RepoBuilder
from tests.support.processes import clean_env, wait_for
from tests.support.testdata import slack_testdata
from tests.test_inbox import Deployment, make_deployment

PAYLOADS = slack_testdata("payloads")
ACK_DEADLINE_S = 3.0  # Slack's: an envelope not acked by then is an error (or a retry)
APPROVER = "U222"  # make_deployment's policy
REQUESTER = "W111"


# -- payloads, from the real ones ---------------------------------------------------------------


def command_payload(slack: FakeSlack, text: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((PAYLOADS / "slash_command.json").read_text())
    payload.update(
        command="/agent",
        text=text,
        team_id="T111",
        channel_id="C111",
        user_id=REQUESTER,
        response_url=slack.response_url(),
        trigger_id=f"{uuid.uuid4().int % 10**12}.111.abc",
    )
    return payload


def click_payload(slack: FakeSlack, user: str, message: Message, value: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        (PAYLOADS / "block_actions_button_in_thread.json").read_text()
    )
    payload.update(
        user={"id": user, "team_id": "T111"},
        team={"id": "T111"},
        channel={"id": message.channel},
        response_url=slack.response_url(),
    )
    payload["container"].update(
        channel_id=message.channel, message_ts=message.ts, thread_ts=message.thread_ts
    )
    payload["message"].update(
        ts=message.ts, text=message.text, blocks=message.blocks, thread_ts=message.thread_ts
    )
    payload["actions"] = [
        {
            "action_id": APPROVE,
            "block_id": f"proposal:{value.split(':')[0]}",
            "value": value,
            "type": "button",
            "action_ts": f"{uuid.uuid4().int % 10**10}.{uuid.uuid4().int % 10**6:06d}",
        }
    ]
    return payload


def mention_payload(text: str, ts: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((PAYLOADS / "AppMentionPayload.json").read_text())
    payload.update(
        team_id="T111",
        api_app_id="A111",
        type="event_callback",
        event_id=f"Ev{uuid.uuid4().hex[:10].upper()}",
    )
    payload["authorizations"] = [{**payload["authorizations"][0], "team_id": "T111"}]
    event = payload["event"]
    for key in ("bot_id", "bot_profile", "app_id", "username", "thread_ts"):
        event.pop(key, None)
    event.update(
        user=REQUESTER, team="T111", text=text, ts=ts, event_ts=ts, channel="C111", blocks=[]
    )
    return payload


# -- the world ------------------------------------------------------------------------------------


@dataclass
class World:
    deployment: Deployment
    slack: FakeSlack
    endpoint: SocketModeEndpoint
    app: Runtime

    @property
    def repo(self) -> RepoBuilder:
        return self.deployment.repo

    def command(self, text: str) -> Envelope:
        return self.endpoint.command(command_payload(self.slack, text))

    def parent(self, branch: str) -> Message:
        return self.slack.wait_for(
            lambda: next(
                (m for m in self.slack.top_level() if f"Analyzing {branch} in" in m.text), None
            )
        )

    def report(self, parent: Message) -> Message:
        return self.slack.wait_for(
            lambda: next(
                (m for m in self.slack.thread(parent.ts) if m.text.startswith("Report for")),
                None,
            )
        )

    def delivery_done(self, key: str) -> bool:
        row = InboxStore(self.app.engine).get(key)
        return row is not None and row.status == "done"


def approve_value(report: Message) -> str:
    [value] = [
        e["value"]
        for b in report.blocks
        if b.get("type") == "actions"
        for e in b["elements"]
        if e["action_id"] == APPROVE
    ]
    return str(value)


def in_time(envelope: Envelope) -> bool:
    return envelope.ack_s is not None and envelope.ack_s < ACK_DEADLINE_S


@pytest.fixture
def deployment(tmp_path: Path, repo: RepoBuilder) -> Deployment:
    return make_deployment(tmp_path, repo)


@pytest.fixture
def world(deployment: Deployment) -> Iterator[World]:
    """`chatops serve` with SLACK_APP_TOKEN, in this process: the composition root, its
    in-process consumer, the Bolt app and the Socket Mode client, built as `serve` builds them,
    connected to the fake endpoint (its first connection open)."""
    with FakeSlack() as slack, SocketModeEndpoint() as endpoint:
        slack.socket_mode = endpoint
        settings = Settings(
            chatops_data_dir=deployment.data,
            chatops_config=deployment.policy,
            slack_bot_token=BOT_TOKEN,
            slack_app_token=APP_TOKEN,
            slack_api_url=slack.api_url,
            chatops_scheduler=False,
        )
        app = build_app(settings, kind="serve")
        assert app.inbox is not None
        bolt = build_bolt_app(web_client(BOT_TOKEN, slack.api_url), "", app.inbox)
        app.start_jobs()
        runner = SocketMode(bolt, APP_TOKEN)
        try:
            runner.connect()  # type: ignore[no-untyped-call]
            endpoint.connected(1)
            yield World(deployment, slack, endpoint, app)
        finally:
            for hold in slack.holds.values():
                hold.set()
            runner.close()  # type: ignore[no-untyped-call]
            app.close()


# -- the tests ------------------------------------------------------------------------------------


def test_a_command_is_acked_within_3s_and_its_report_lands_in_its_thread(world: World) -> None:
    envelope = world.endpoint.acked(world.command("analyze branch feature/imports in shop"))
    assert in_time(envelope), envelope.ack_s
    assert envelope.acks == 1 and not envelope.response  # an empty ack: the parent message says
    parent = world.parent("feature/imports")
    assert f"<@{REQUESTER}>" in json.dumps(parent.blocks)
    report = world.report(parent)
    shown = json.dumps(report.blocks)
    assert "Report: feature/imports" in shown and "F401" in shown
    [run] = world.app.store.recent()
    assert run.status == "done" and run.message == parent.ts
    # Everything went over the one connection Slack opened, and nothing was refused.
    assert [c.number for c in world.endpoint.connections] == [1]
    assert world.endpoint.refused == [] and world.endpoint.stray_acks == []
    assert [c.response for c in world.slack.calls if not c.response.get("ok", True)] == []


def test_a_mistyped_command_is_answered_in_its_ack(world: World) -> None:
    envelope = world.endpoint.acked(world.command("frobnicate branch feature/imports"))
    assert in_time(envelope)
    assert envelope.response is not None and envelope.response["response_type"] == "ephemeral"
    assert "/agent help" in envelope.response["text"]
    assert world.slack.top_level() == [] and world.app.store.recent() == []


def test_an_approve_click_makes_exactly_one_commit(world: World) -> None:
    base = world.repo.head("feature/imports")
    world.endpoint.acked(world.command("analyze branch feature/imports in shop"))
    parent = world.parent("feature/imports")
    report = world.report(parent)
    value = approve_value(report)
    ref = value.split(":")[0]

    first = click_payload(world.slack, APPROVER, report, value)
    again = click_payload(world.slack, APPROVER, report, value)  # an impatient second click
    clicks = [world.endpoint.interactive(first), world.endpoint.interactive(again)]
    for click in clicks:
        assert in_time(world.endpoint.acked(click))
    keys = [
        f"slack:action:{APPROVER}:{p['actions'][0]['action_ts']}:{APPROVE}" for p in (first, again)
    ]
    wait_for(lambda: all(world.delivery_done(k) for k in keys), 30, "the clicks' handling")
    applied = world.slack.wait_for(
        lambda: [m for m in world.slack.thread(parent.ts) if f"{ref} applied" in m.text]
    )
    wait_for(lambda: world.app.jobs.pending() == 0, 30, "the queue to empty")

    head = world.repo.head("feature/imports")
    assert world.repo.git("rev-list", "--count", f"{base}..{head}").strip() == "1"
    message = world.repo.git("log", "-1", "--format=%B", head)
    assert f"Approved-by: {APPROVER}" in message and f"Requested-by: {REQUESTER}" in message
    assert len(applied) == 1
    [proposal] = world.app.service.approvals.proposals.for_run(ref.split("/")[0])
    assert proposal.status == "applied"


def test_a_dropped_connection_in_the_middle_of_a_run_loses_nothing(world: World) -> None:
    """The connection goes away (no close frame) while a run is going and an event's ack is
    lost on the way: the client reconnects by itself, Slack delivers the event again on the new
    connection, it is handled once, the run's report lands, and a click on the new connection
    makes its one commit."""
    endpoint, slack = world.endpoint, world.slack
    base = world.repo.head("feature/imports")
    progress = slack.hold("chat.update")  # the run's first progress edit waits on Slack
    assert in_time(endpoint.acked(world.command("analyze branch feature/imports in shop")))
    parent = world.parent("feature/imports")
    slack.wait_for(lambda: "chat.update" in slack.held)  # the run is under way

    deaf = endpoint.lose_acks()  # this connection's acks from now on never reach Slack
    mention = endpoint.event(mention_payload("<@UBOT> status", "1700000500.000100"))
    key = f"slack:event:{mention.payload['event_id']}"
    endpoint.wait_for(lambda: mention.id in deaf.lost_acks, what="the mention's (lost) ack")
    wait_for(lambda: world.delivery_done(key), 30, "the mention's handling")
    assert endpoint.drop() is deaf and mention.acked_at is None

    endpoint.connected(2)  # the client comes back by itself
    [_, retry] = endpoint.deliveries(mention)
    assert (retry.retry_attempt, retry.retry_reason, retry.connection) == (1, "timeout", 2)
    assert in_time(endpoint.acked(retry))
    progress.set()
    report = world.report(parent)
    click = endpoint.interactive(click_payload(slack, APPROVER, report, approve_value(report)))
    assert in_time(endpoint.acked(click)) and click.connection == 2
    ref = approve_value(report).split(":")[0]
    slack.wait_for(lambda: [m for m in slack.thread(parent.ts) if f"{ref} applied" in m.text])

    answers = slack.thread("1700000500.000100")
    assert len(answers) == 1, [m.text for m in answers]  # the mention, answered once
    head = world.repo.head("feature/imports")
    assert world.repo.git("rev-list", "--count", f"{base}..{head}").strip() == "1"
    [run] = world.app.store.recent()
    assert (run.status, run.attempts) == ("done", 1)
    assert not [e for e in endpoint.envelopes if e.failed and e.failed != "retried"]


@pytest.mark.parametrize("reason", ["refresh_requested", "warning"])
def test_a_refresh_moves_to_the_new_connection_and_acks_in_time(world: World, reason: str) -> None:
    """Slack's `disconnect` (a refresh, or a warning that the connection is going): the client
    opens a new connection and closes the old one; what Slack sends on the new one at once is
    acked within 3 s."""
    endpoint = world.endpoint
    old = endpoint.disconnect(reason)
    endpoint.connected(2)
    envelope = endpoint.command(command_payload(world.slack, "analyze branch feature/imports"))
    assert envelope.connection == 2
    assert in_time(endpoint.acked(envelope)), envelope.ack_s
    report = world.report(world.parent("feature/imports"))
    assert "Report: feature/imports" in json.dumps(report.blocks)
    endpoint.wait_for(lambda: not old.open, what="the old connection to close")
    assert old.closed_by == "client"
    assert [c.open for c in endpoint.connections] == [False, True]
    assert len(world.slack.called("apps.connections.open")) == 2


def test_a_close_frame_from_slack_is_followed_by_a_new_connection(world: World) -> None:
    endpoint = world.endpoint
    endpoint.close(1001, "going away")
    endpoint.connected(2)
    envelope = endpoint.command(command_payload(world.slack, "help"))
    assert in_time(endpoint.acked(envelope)) and envelope.acked_on == 2
    assert envelope.response is not None and "analyze branch" in envelope.response["text"]


# -- SIGTERM: the real `chatops serve` ------------------------------------------------------------


@dataclass
class Serving:
    """Fakes for `python -m bot serve` children, and the children started."""

    deployment: Deployment
    slack: FakeSlack
    endpoint: SocketModeEndpoint
    processes: list[subprocess.Popen[bytes]]

    def start(self, **more: str) -> subprocess.Popen[bytes]:
        settings = {
            "CHATOPS_DATA_DIR": str(self.deployment.data),
            "CHATOPS_CONFIG": str(self.deployment.policy),
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "SLACK_API_URL": self.slack.api_url,
            "CHATOPS_SCHEDULER": "false",
        }
        env = clean_env(**{**settings, **more})  # `more` overrides
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.processes.append(process)
        return process


@pytest.fixture
def serving(deployment: Deployment) -> Iterator[Serving]:
    with FakeSlack() as slack, SocketModeEndpoint() as endpoint:
        slack.socket_mode = endpoint
        serving = Serving(deployment, slack, endpoint, [])
        try:
            yield serving
        finally:
            for event in slack.holds.values():
                event.set()
            for process in serving.processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()


def stopped(process: subprocess.Popen[bytes]) -> int:
    """The exit code of a serve sent SIGTERM (killed, and a failure, past 30 s)."""
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("serve did not stop within 30 s of SIGTERM") from None


def stderr_of(process: subprocess.Popen[bytes]) -> str:
    return process.stderr.read().decode() if process.stderr else ""


@pytest.mark.slow
def test_sigterm_stops_serve_gracefully_and_a_restart_finishes_the_run(
    serving: Serving, deployment: Deployment
) -> None:
    """SIGTERM in the middle of a run: serve closes its connection (and opens no other), hands
    the run back and exits 0 after the grace period; the next serve finishes the run, in the
    same thread."""
    slack, endpoint = serving.slack, serving.endpoint
    first = serving.start(CHATOPS_SHUTDOWN_GRACE_S="1")
    connection = endpoint.connected(1)
    progress = slack.hold("chat.update")
    envelope = endpoint.command(command_payload(slack, "analyze branch feature/imports in shop"))
    assert in_time(endpoint.acked(envelope))
    slack.wait_for(lambda: "chat.update" in slack.held)  # mid-run, waiting on Slack
    opened = len(slack.called("apps.connections.open"))

    first.send_signal(signal.SIGTERM)
    assert stopped(first) == 0, stderr_of(first)
    endpoint.wait_for(lambda: not connection.open, what="the connection to close")
    assert connection.closed_by == "client"
    assert len(slack.called("apps.connections.open")) == opened  # it did not reconnect
    observer = build_app(deployment.settings())
    try:
        [run] = observer.store.recent()
        assert (run.status, run.attempts) == ("queued", 0)  # handed back, not a failed try
        rows = observer.reaper.workers.seen_since(utcnow() - timedelta(minutes=5))
        assert [(r.kind, r.state) for r in rows] == [("serve", "stopped")]

        progress.set()
        second = serving.start()
        endpoint.connected(2)
        [parent] = slack.top_level()
        slack.wait_for(
            lambda: [m for m in slack.thread(parent.ts) if m.text.startswith("Report for")]
        )
        done = wait_for(
            lambda: (r := observer.store.get(run.id)) is not None and r.status == "done" and r,
            what="the run to finish",
        )
        assert done.attempts == 1 and len(slack.top_level()) == 1
        second.send_signal(signal.SIGTERM)
        assert stopped(second) == 0, stderr_of(second)
    finally:
        observer.close()


@pytest.mark.slow
def test_sigterm_while_connecting_is_a_graceful_stop_too(
    serving: Serving, deployment: Deployment
) -> None:
    """A SIGTERM that comes while serve is still opening its connection (Slack slow to answer
    apps.connections.open) stops it as any other: exit 0, its consumer marked stopped."""
    slack = serving.slack
    opening = slack.hold("apps.connections.open")
    process = serving.start()
    slack.wait_for(lambda: "apps.connections.open" in slack.held)
    process.send_signal(signal.SIGTERM)
    opening.set()
    assert stopped(process) == 0, stderr_of(process)
    observer = build_app(deployment.settings())
    try:
        rows = observer.reaper.workers.seen_since(utcnow() - timedelta(minutes=5))
        assert [(r.kind, r.state) for r in rows] == [("serve", "stopped")]
    finally:
        observer.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("token", "error"),
    [("xapp-1-A111-1-revoked", "invalid_auth"), (BOT_TOKEN, "not_allowed_token_type")],
)
def test_a_refused_app_token_is_said_in_one_line(serving: Serving, token: str, error: str) -> None:
    process = serving.start(SLACK_APP_TOKEN=token)
    assert stopped(process) == 2
    said = stderr_of(process)
    assert f"Socket Mode could not connect: Slack answered {error}" in said, said
    assert "SLACK_APP_TOKEN (xapp-..." in said and "Traceback" not in said
    assert serving.endpoint.connections == []
