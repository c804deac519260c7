"""A human checkpoint after each agent (issue 18, part 2): `analyze branch NAME step`.

A stepped run ends its job after each agent and waits as a row (status "waiting", no worker, no
lease, a deadline); Continue queues its next leg, Stop and the deadline queue a leg that writes
the report of what was let through. A finding dropped at a checkpoint is a 👎 with its reason,
and neither later agents nor the report see it. The shell and Slack (Bolt's real listeners and
the inbox, with slack_sdk against the fake API) are driven here; the worker's legs run by
calling the executor, as a job does, so nothing waits on a clock."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from rich.console import Console
from slack_bolt import App
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from sqlalchemy import update
from sqlmodel import col, select

from agents.context.git import GitRepo, load_diff
from agents.pipeline import Paused, Saved, run_step
from agents.report import Finding, Report, Severity, Source, fingerprint
from agents.roles.base import PipelineState
from bot.app import Runtime, build_app
from bot.core.actor import Actor, UserError
from bot.core.commands import AnalyzeBranch, Continue, Drop, Stop, parse
from bot.core.service import Requested
from bot.settings import Settings
from bot.store.db import session_scope
from bot.store.feedback import FeedbackStore
from bot.store.models import FeedbackRow, Run
from bot.store.types import utcnow
from bot.surfaces.shell import Shell
from bot.surfaces.slack.blocks import CHECKPOINT_CONTINUE, CHECKPOINT_DROP, CHECKPOINT_STOP
from bot.surfaces.slack.listeners import register
from bot.surfaces.slack.views import DROP_REASON
from tests.support.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.support.gitrepo import RepoBuilder
from tests.support.services import fresh_postgres, needs_postgres
from tests.support.testdata import slack_testdata

UNUSED = "import json\nimport os\nimport sys\n\n\ndef main():\n    return sys.argv\n"
REQUESTER = Actor("W111", "slack", team="T111")
APPROVER = Actor("U222", "slack", team="T111")
STRANGER = Actor("W999", "slack", team="T111")


# -- the pipeline: a leg at a time ---------------------------------------------------------------


class Finds:
    """Adds a finding per title, and remembers the findings it was shown."""

    description = "adds findings"

    def __init__(self, name: str, *titles: str) -> None:
        self.name = name
        self.titles = titles
        self.saw: list[str] = []

    def run(self, state: PipelineState) -> None:
        self.saw = [f.title for f in state.findings]
        for title in self.titles:
            state.findings.append(
                Finding(
                    fingerprint=fingerprint(
                        source=Source.heuristic, rule=title, file=None, anchor=title
                    ),
                    agent=self.name,
                    category="test",
                    severity=Severity.medium,
                    confidence=1.0,
                    title=title,
                    source=Source.heuristic,
                )
            )


def test_a_leg_at_a_time_and_a_dropped_finding_never_reaches_later_agents(
    planted_repo: RepoBuilder,
) -> None:
    diff = load_diff(GitRepo.open(planted_repo.root), "feature/planted")
    first, second, third = Finds("first", "noise", "real"), Finds("second", "more"), Finds("third")
    agents = [first, second, third]

    paused = run_step(diff, saved=None, run_id="r1", agents=agents)
    assert isinstance(paused, Paused)
    saved = Saved.model_validate_json(paused.saved.model_dump_json())  # kept as JSON, read back
    assert saved.after == "first" and saved.next_agent == "second"
    assert [(n, f.title) for n, f in saved.new_findings()] == [(1, "noise"), (2, "real")]
    noise = saved.find("F1")
    assert noise is not None
    saved = saved.without(noise, "W111", "a fixture, not code")

    paused = run_step(diff, saved=saved, run_id="r1", agents=agents)
    assert isinstance(paused, Paused)
    assert second.saw == ["real"]  # the dropped finding was not there to build on
    assert [f.title for _, f in paused.saved.new_findings()] == ["more"]
    # Numbers stay what they were when shown: after F1 was dropped, F2 is still "real", F3
    # "more", and F1 names nothing any more (a stale message cannot drop another finding).
    assert [(n, f.title) for n, f in paused.saved.new_findings()] == [(3, "more")]
    real, more = paused.saved.find("F2"), paused.saved.find("F3")
    assert real is not None and real.title == "real" and more is not None and more.title == "more"
    assert paused.saved.find("F1") is None

    report = run_step(diff, saved=paused.saved, run_id="r1", agents=agents)
    assert isinstance(report, Report)
    assert third.saw == ["real", "more"]
    assert sorted(f.title for f in report.findings) == ["more", "real"]
    assert "Dropped at a checkpoint by W111 as not a problem: 'noise'" in report.summary
    assert "a fixture, not code" in report.summary
    assert [a.status for a in report.agents] == ["done", "done", "done"]
    assert report.complete and not report.stopped_early


def test_a_stop_at_a_checkpoint_reports_what_was_let_through(planted_repo: RepoBuilder) -> None:
    diff = load_diff(GitRepo.open(planted_repo.root), "feature/planted")
    agents = [Finds("first", "one"), Finds("second", "two")]
    paused = run_step(diff, saved=None, run_id="r2", agents=agents)
    assert isinstance(paused, Paused)
    report = run_step(diff, saved=paused.saved, run_id="r2", agents=agents, stop="Stopped by W1.")
    assert isinstance(report, Report)
    assert report.stopped_early and [f.title for f in report.findings] == ["one"]
    assert [a.status for a in report.agents] == ["done", "cancelled"]
    assert "Stopped by W1." in report.summary


def test_the_grammar_has_step_continue_and_drop() -> None:
    assert parse("analyze branch feature/x in shop step") == AnalyzeBranch(
        "feature/x", "shop", None, step=True
    )
    assert parse("analyze branch feature/x").step is False  # type: ignore[union-attr]
    assert parse("continue 3f2a9c1b7d4e") == Continue("3f2a9c1b7d4e")
    assert parse('drop 3f2a9c1b7d4e/f2 "a test fixture"') == Drop(
        "3f2a9c1b7d4e", "F2", "a test fixture"
    )
    for wrong in ("drop 3f2a9c1b7d4e/F2", "drop F2 why", "continue"):
        with pytest.raises(Exception, match="Usage|drop|continue"):
            parse(wrong)


# -- the worker and the store --------------------------------------------------------------------


@dataclass
class Place:
    root: Path
    policy: Path
    database_url: str | None = None

    def settings(self, slack: FakeSlack | None = None) -> Settings:
        extra: dict[str, Any] = {}
        if slack is not None:
            extra = {"slack_bot_token": BOT_TOKEN, "slack_api_url": slack.api_url}
        if self.database_url is not None:
            extra["database_url"] = self.database_url
        return Settings(chatops_data_dir=self.root / "data", chatops_config=self.policy, **extra)


def make_place(tmp_path: Path, repo: RepoBuilder, *, step_by_default: bool = False) -> Place:
    repo.branch("feature/imports")
    repo.commit({"shop/cli.py": UNUSED})
    repo.checkout("main")
    policy = tmp_path / "chatops.toml"
    step = "step = true\n" if step_by_default else ""
    policy.write_text(
        f'[repos.shop]\npath = "{repo.root}"\n{step}\n'
        '[approvals]\napprovers = ["U222"]\ncheckpoint_timeout = "30m"\n'
    )
    return Place(tmp_path, policy)


@pytest.fixture
def place(tmp_path: Path, repo: RepoBuilder) -> Place:
    return make_place(tmp_path, repo)


@pytest.fixture
def app(place: Place) -> Iterator[Runtime]:
    built = build_app(place.settings())
    try:
        yield built
    finally:
        built.close()


def stepped(app: Runtime, actor: Actor = REQUESTER, place: str | None = None) -> str:
    result = app.service.carry_out(actor, parse("analyze branch feature/imports step"))
    assert isinstance(result, list)
    [requested] = result
    assert isinstance(requested, Requested)
    return requested.run.id


def run(app: Runtime, run_id: str) -> Run:
    found = app.store.get(run_id)
    assert found is not None
    return found


def saved(app: Runtime, run_id: str) -> Saved:
    row = run(app, run_id)
    assert row.status == "waiting" and row.checkpoint
    return Saved.model_validate_json(row.checkpoint)


def leg(app: Runtime, run_id: str) -> Run:
    """The job a worker runs for the queued run id: one agent, or the report."""
    app.executor(run_id)
    return run(app, run_id)


def past_deadline(app: Runtime, run_id: str) -> None:
    with session_scope(app.engine) as session:
        session.execute(
            update(Run)
            .where(col(Run.id) == run_id)
            .values(wait_until=utcnow() - timedelta(seconds=1))
        )


def no_lease_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name.startswith("lease-")]


def to_the_end(app: Runtime, run_id: str, actor: Actor = REQUESTER) -> Report:
    row = run(app, run_id)
    while row.status == "waiting":
        app.service.carry_out(actor, Continue(run_id))
        row = leg(app, run_id)
    assert row.status == "done"
    report = app.store.report(run_id)
    assert report is not None
    return report


def test_a_stepped_run_waits_as_a_row_and_goes_on_when_continued(app: Runtime) -> None:
    run_id = stepped(app)
    waiting = leg(app, run_id)
    # The job ended: no worker, no lease, no thread holds the wait; a deadline does.
    assert waiting.status == "waiting" and waiting.worker is None and waiting.lease_until is None
    assert no_lease_threads()
    assert waiting.wait_until is not None
    left = (waiting.wait_until - utcnow()).total_seconds()
    assert 25 * 60 < left <= 30 * 60  # the policy's checkpoint_timeout
    first = saved(app, run_id)
    assert first.after == "code_review"
    assert any(f.rule == "F401" for _, f in first.new_findings())
    app.executor(run_id)  # a stray job for the run id: nothing to claim
    assert run(app, run_id).status == "waiting"
    report = to_the_end(app, run_id)
    assert report.complete and not report.stopped_early
    assert {a.status for a in report.agents} == {"done"}


def test_a_drop_is_a_thumbs_down_with_its_reason_and_leaves_the_report(app: Runtime) -> None:
    run_id = stepped(app)
    leg(app, run_id)
    first = saved(app, run_id)
    number, dropped = first.new_findings()[0]
    out = app.service.carry_out(REQUESTER, Drop(run_id, f"F{number}", "shim imports, on purpose"))
    assert "Dropped" in out.message  # type: ignore[attr-defined]
    assert dropped.fingerprint not in {f.fingerprint for f in saved(app, run_id).findings}
    with pytest.raises(UserError, match="no finding"):  # dropped once
        app.service.carry_out(REQUESTER, Drop(run_id, dropped.fingerprint, "again"))
    with session_scope(app.engine) as session:
        rows = list(session.exec(select(FeedbackRow).where(FeedbackRow.run_id == run_id)))
        votes = [(r.fingerprint, r.vote, r.reason, r.user, r.agent) for r in rows]
    assert votes == [(dropped.fingerprint, -1, "shim imports, on purpose", "W111", dropped.agent)]
    report = to_the_end(app, run_id)
    assert dropped.fingerprint not in {f.fingerprint for f in report.findings}
    assert "Dropped at a checkpoint by W111 as not a problem" in report.summary
    # the 👎 is a vote like any other: curation and the tally read it
    tally = FeedbackStore(app.engine).tally("shop", [dropped.fingerprint])
    assert tally == {dropped.fingerprint: (0, 1)}


def test_stop_at_a_checkpoint_writes_the_report_so_far(app: Runtime) -> None:
    run_id = stepped(app)
    leg(app, run_id)
    stopping = app.service.carry_out(APPROVER, Stop(run_id))  # an approver may
    assert isinstance(stopping, Run) and stopping.status == "queued" and stopping.stop_requested
    ended = leg(app, run_id)
    assert ended.status == "cancelled"
    report = app.store.report(run_id)
    assert report is not None and report.stopped_early
    assert [(a.name, a.status) for a in report.agents][:2] == [
        ("code_review", "done"),
        ("tests", "cancelled"),
    ]
    assert "Stopped at the checkpoint after code_review by U222." in report.summary
    with pytest.raises(UserError, match=r"not waiting at a checkpoint \(it is cancelled\)"):
        app.service.carry_out(REQUESTER, Continue(run_id))


def test_the_deadline_stops_a_wait_once_across_reapers(app: Runtime, place: Place) -> None:
    run_id = stepped(app)
    leg(app, run_id)
    with session_scope(app.engine) as session:  # the deadline passed (no clock is waited on)
        session.execute(
            update(Run)
            .where(col(Run.id) == run_id)
            .values(wait_until=utcnow() - timedelta(seconds=1))
        )
    other = build_app(place.settings())  # a second instance's reaper on the same store
    try:
        assert other.store.expire_waits() == [run_id]
        assert app.store.expire_waits() == []  # once
    finally:
        other.close()
    row = run(app, run_id)
    assert row.status == "queued" and row.stop_requested and row.stop_requested_by is None
    assert leg(app, run_id).status == "cancelled"
    report = app.store.report(run_id)
    assert report is not None and report.stopped_early
    assert "Nobody continued it within 30m of the checkpoint after code_review" in report.summary


def test_the_reaper_pass_stops_an_expired_wait(app: Runtime) -> None:
    run_id = stepped(app)
    leg(app, run_id)
    with session_scope(app.engine) as session:
        session.execute(
            update(Run)
            .where(col(Run.id) == run_id)
            .values(wait_until=utcnow() - timedelta(seconds=1))
        )
    queued: list[str] = []
    app.reaper.enqueue = queued.append  # what it hands the queue
    app.reaper.reap_once()
    assert queued == [run_id] and run(app, run_id).stop_requested


def test_a_restart_while_waiting_loses_nothing(place: Place) -> None:
    first = build_app(place.settings())
    try:
        run_id = stepped(first)
        leg(first, run_id)
        before = saved(first, run_id)
    finally:
        first.close()  # the process goes away while the run waits
    again = build_app(place.settings())
    try:
        assert saved(again, run_id) == before
        again.service.carry_out(REQUESTER, Continue(run_id))
        after = leg(again, run_id)
        assert after.status == "waiting" and saved(again, run_id).after == "tests"
        assert to_the_end(again, run_id).complete
    finally:
        again.close()


def test_only_the_requester_or_an_approver_decides(app: Runtime) -> None:
    run_id = stepped(app)
    leg(app, run_id)
    for command in (Continue(run_id), Stop(run_id), Drop(run_id, "F1", "mine now")):
        with pytest.raises(UserError, match="Only W111 .* or an approver may"):
            app.service.carry_out(STRANGER, command)
    assert run(app, run_id).status == "waiting"
    app.service.carry_out(APPROVER, Continue(run_id))
    with pytest.raises(UserError, match="not waiting"):  # a second click
        app.service.carry_out(REQUESTER, Continue(run_id))


def test_a_repository_can_step_every_run(tmp_path: Path, repo: RepoBuilder) -> None:
    place = make_place(tmp_path, repo, step_by_default=True)
    app = build_app(place.settings())
    try:
        result = app.service.carry_out(REQUESTER, AnalyzeBranch("feature/imports"))
        assert isinstance(result, list)
        [requested] = result
        assert isinstance(requested, Requested) and requested.run.step
        assert leg(app, requested.run.id).status == "waiting"
    finally:
        app.close()


@needs_postgres
def test_on_postgresql_continue_drop_and_stop(tmp_path: Path, repo: RepoBuilder) -> None:
    with fresh_postgres() as url:
        place = make_place(tmp_path, repo)
        place.database_url = url
        from bot.store.db import upgrade

        upgrade(url)
        app = build_app(place.settings())
        try:
            run_id = stepped(app)
            leg(app, run_id)
            number, finding = saved(app, run_id).new_findings()[0]
            app.service.carry_out(REQUESTER, Drop(run_id, f"F{number}", "known"))
            app.service.carry_out(REQUESTER, Continue(run_id))
            assert leg(app, run_id).status == "waiting"
            app.service.carry_out(REQUESTER, Stop(run_id))
            assert leg(app, run_id).status == "cancelled"
            report = app.store.report(run_id)
            assert report is not None and report.stopped_early
            assert finding.fingerprint not in {f.fingerprint for f in report.findings}
        finally:
            app.close()


# -- the shell -----------------------------------------------------------------------------------


def shell_of(app: Runtime, user: str) -> tuple[Shell, io.StringIO]:
    out = io.StringIO()
    return Shell(app.service, user, Console(file=out, width=200)), out


def test_in_the_shell_step_drop_continue_and_stop(place: Place) -> None:
    app = build_app(place.settings())
    app.start_jobs()  # the embedded worker runs the legs
    try:
        shell, out = shell_of(app, "ana")
        shell.handle("analyze branch feature/imports step")
        run_id = shell.last_run
        assert run_id is not None
        text = out.getvalue()
        assert f"Run {run_id} waits at the checkpoint after code_review" in text
        assert f"continue {run_id}" in text and f"drop {run_id}/F1 REASON" in text
        assert run(app, run_id).worker is None

        stranger, said = shell_of(app, "mallory")
        stranger.handle(f"continue {run_id}")
        assert "Only ana (who asked for it) or an approver may continue" in said.getvalue()

        first = saved(app, run_id)
        number, dropped = first.new_findings()[0]
        shell.handle(f'drop {run_id}/F{number} "re-exported on purpose"')
        assert "Later agents and the report go without it" in out.getvalue()

        shell.handle(f"continue {run_id}")
        assert f"Run {run_id} waits at the checkpoint after tests" in out.getvalue()
        shell.handle(f"stop {run_id}")
        final = run(app, run_id)
        assert final.status == "cancelled"
        report = app.store.report(run_id)
        assert report is not None and report.stopped_early
        assert dropped.fingerprint not in {f.fingerprint for f in report.findings}
        assert "Stopped at the checkpoint after tests by ana." in out.getvalue()
    finally:
        app.close()


# -- Slack: Bolt's listeners, the inbox, slack_sdk against the fake ------------------------------


def dispatch(bolt: App, payload: dict[str, Any]) -> int:
    body = urlencode({"payload": json.dumps(payload)})
    request = BoltRequest(
        body=body, headers={"content-type": ["application/x-www-form-urlencoded"]}
    )
    return int(bolt.dispatch(request).status)


def slash(bolt: App, slack: FakeSlack, text: str) -> int:
    body = urlencode(
        {
            "command": "/agent",
            "text": text,
            "user_id": "W111",
            "team_id": "T111",
            "channel_id": "C111",
            "trigger_id": f"{uuid.uuid4().int % 10**10}.1.{uuid.uuid4().hex[:6]}",
            "response_url": slack.response_url(),
        }
    )
    request = BoltRequest(
        body=body, headers={"content-type": ["application/x-www-form-urlencoded"]}
    )
    return int(bolt.dispatch(request).status)


def click(bolt: App, slack: FakeSlack, user: str, ts: str, action_id: str, **action: object) -> int:
    payload = json.loads(
        slack_testdata("payloads", "block_actions_button_in_thread.json").read_text()
    )
    message = next(m for m in slack.messages if m.ts == ts)
    payload.update(
        user={"id": user, "team_id": "T111"},
        team={"id": "T111"},
        channel={"id": "C111"},
        trigger_id=f"{uuid.uuid4().int % 10**12}.111.{uuid.uuid4().hex[:8]}",
        response_url=slack.response_url(),
        actions=[{"action_ts": f"{time.time():.6f}", "action_id": action_id, **action}],
    )
    payload["container"].update(channel_id="C111", message_ts=ts)
    payload["message"].update(ts=ts, text=message.text, blocks=message.blocks)
    return dispatch(bolt, payload)


def bolt_for(app: Runtime, slack: FakeSlack) -> App:
    assert app.inbox is not None
    bolt = App(
        client=WebClient(token=BOT_TOKEN, base_url=slack.api_url),
        signing_secret="unused",
        request_verification_enabled=False,
        process_before_response=True,
    )
    register(bolt, app.inbox)
    return bolt


def elements(blocks: list[dict[str, Any]], action_id: str) -> list[dict[str, Any]]:
    found = []
    for block in blocks:
        for element in [*block.get("elements", []), block.get("accessory") or {}]:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                found.append(element)
    return found


def test_over_slack_a_checkpoint_with_its_buttons_a_refusal_a_drop_and_stop(place: Place) -> None:
    with FakeSlack() as slack:
        app = build_app(place.settings(slack))
        try:
            bolt = bolt_for(app, slack)
            assert slash(bolt, slack, "analyze branch feature/imports step") == 200
            [parent] = slack.top_level()
            [row] = app.store.recent()
            run_id = row.id
            assert leg(app, run_id).status == "waiting"
            shown = next(m for m in slack.messages if m.ts == parent.ts)
            assert "Checkpoint after `code_review`" in json.dumps(shown.blocks)
            [go] = elements(shown.blocks, CHECKPOINT_CONTINUE)
            [halt] = elements(shown.blocks, CHECKPOINT_STOP)
            drops = elements(shown.blocks, CHECKPOINT_DROP)
            assert go["value"] == run_id and halt["value"] == run_id and drops

            # a stranger's Continue: refused, to them alone; the run still waits
            assert click(bolt, slack, "W999", parent.ts, CHECKPOINT_CONTINUE, value=run_id) == 200
            refusal = [r for r in slack.responses if "may continue" in r["text"]]
            assert refusal and refusal[0]["response_type"] == "ephemeral"
            assert run(app, run_id).status == "waiting"

            # "Not a problem…": the modal, then its reason: a 👎, and the finding leaves
            option = drops[0]["options"][0]["value"]
            assert (
                click(
                    bolt,
                    slack,
                    "W111",
                    parent.ts,
                    CHECKPOINT_DROP,
                    type="overflow",
                    selected_option={"value": option},
                )
                == 200
            )
            [modal] = [v for v in slack.views if v.get("callback_id") == DROP_REASON]
            submission = json.loads(slack_testdata("payloads", "view_submission.json").read_text())
            submission["user"] = {"id": "W111", "team_id": "T111"}
            submission["view"].update(
                callback_id=DROP_REASON, private_metadata=modal["private_metadata"]
            )
            submission["view"]["state"] = {
                "values": {
                    "reason": {"reason": {"type": "plain_text_input", "value": "on purpose"}}
                }
            }
            for _ in range(2):  # delivered twice: handled once
                assert dispatch(bolt, submission) == 200
            fingerprint = option.split(":")[2]
            with session_scope(app.engine) as session:
                rows = list(session.exec(select(FeedbackRow).where(FeedbackRow.run_id == run_id)))
                assert [(r.fingerprint, r.vote, r.reason, r.via) for r in rows] == [
                    (fingerprint, -1, "on purpose", "modal")
                ]
            assert fingerprint not in {f.fingerprint for f in saved(app, run_id).findings}
            shown = next(m for m in slack.messages if m.ts == parent.ts)
            assert "dropped by <@W111>" in json.dumps(shown.blocks)

            # the requester's Continue, clicked twice: one next leg
            for _ in range(2):
                assert (
                    click(bolt, slack, "W111", parent.ts, CHECKPOINT_CONTINUE, value=run_id) == 200
                )
            assert run(app, run_id).status == "queued"
            assert [
                r
                for r in slack.responses
                if "already went on" in r["text"] or "not waiting" in r["text"]
            ]
            # The clicker is answered alone; the parent is left to the worker's own edits.
            assert any(f"Continued: run `{run_id}`" in r["text"] for r in slack.responses)
            shown = next(m for m in slack.messages if m.ts == parent.ts)
            assert "continued by" not in json.dumps(shown.blocks)
            assert leg(app, run_id).status == "waiting"
            shown = next(m for m in slack.messages if m.ts == parent.ts)
            assert "Checkpoint after `tests`" in json.dumps(shown.blocks)

            # Stop: the report of what was let through, in the thread
            assert click(bolt, slack, "W111", parent.ts, CHECKPOINT_STOP, value=run_id) == 200
            assert leg(app, run_id).status == "cancelled"
            [posted] = [m for m in slack.thread(parent.ts) if m.ts != parent.ts]
            assert "Stopped at the checkpoint after tests by W111." in json.dumps(posted.blocks)
            assert fingerprint not in json.dumps(posted.blocks)
            final = next(m for m in slack.messages if m.ts == parent.ts)
            assert "stopped by <@W111>" in json.dumps(final.blocks)
            assert not elements(final.blocks, CHECKPOINT_CONTINUE)
        finally:
            app.close()


def test_over_slack_a_restart_and_the_deadline(place: Place) -> None:
    with FakeSlack() as slack:
        first = build_app(place.settings(slack))
        try:
            assert (
                slash(bolt_for(first, slack), slack, "analyze branch feature/imports step") == 200
            )
            [row] = first.store.recent()
            assert leg(first, row.id).status == "waiting"
        finally:
            first.close()
        again = build_app(place.settings(slack))  # a new instance on the same store
        try:
            [parent] = slack.top_level()
            bolt = bolt_for(again, slack)
            assert click(bolt, slack, "U222", parent.ts, CHECKPOINT_CONTINUE, value=row.id) == 200
            assert leg(again, row.id).status == "waiting"  # after tests now
            with session_scope(again.engine) as session:
                session.execute(
                    update(Run)
                    .where(col(Run.id) == row.id)
                    .values(wait_until=utcnow() - timedelta(seconds=1))
                )
            assert again.store.expire_waits() == [row.id]
            assert leg(again, row.id).status == "cancelled"
            [posted] = [m for m in slack.thread(parent.ts) if m.ts != parent.ts]
            assert "Nobody continued it within 30m" in json.dumps(posted.blocks)
        finally:
            again.close()


def test_a_stepped_run_stopped_while_its_worker_died_still_gets_its_report(app: Runtime) -> None:
    """Continued, then asked to stop while its next agent ran, and its worker died: the reaper
    queues it again (a plain run would be cancelled), so the report of what was let through is
    written, not lost."""
    run_id = stepped(app)
    leg(app, run_id)
    with session_scope(app.engine) as session:  # as a worker that claimed it, then died
        session.execute(
            update(Run)
            .where(col(Run.id) == run_id)
            .values(
                status="running",
                worker="dead-worker",
                lease_until=utcnow() - timedelta(seconds=1),
                stop_requested=True,
                stop_requested_by="U1",
            )
        )
    again = app.store.reap(max_attempts=3, requeue_after_s=600)
    assert again == [run_id] and run(app, run_id).status != "cancelled"
    finished = leg(app, run_id)
    report = app.store.report(run_id)
    assert finished.status in ("cancelled", "done") and report is not None
    assert report.stopped_early


def test_a_leg_after_the_agents_changed_matches_them_by_name(planted_repo: RepoBuilder) -> None:
    """Between legs a deploy adds an agent before the ones done: the done ones stay done by
    name, the new one runs; nothing is taken for done because of its position."""
    diff = load_diff(GitRepo.open(planted_repo.root), "feature/planted")
    first, second = Finds("first", "a"), Finds("second", "b")
    paused = run_step(diff, saved=None, run_id="r1", agents=[first, second])
    assert isinstance(paused, Paused)
    added = Finds("added", "c")
    after = run_step(diff, saved=paused.saved, run_id="r1", agents=[added, first, second])
    assert isinstance(after, Paused)
    assert [(a.name, a.status) for a in after.saved.agents] == [
        ("added", "done"),
        ("first", "done"),
        ("second", "waiting"),
    ]
    assert first.saw == [] and added.saw == ["a"]  # "first" ran once; "added" in this leg
