"""A report shown again (`status RUN` in the shell, Slack's Full report button) shows each
proposal as the proposals store has it now: applied, rejected, expired, not "waiting for
approval" as when the report was first shown."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import update

from bot.app import Runtime, build_app
from bot.core.actor import Actor
from bot.core.proposal_state import ProposalState, states_of
from bot.store.db import session_scope
from bot.store.models import ProposalRow
from bot.store.types import utcnow
from bot.surfaces.render.markdown import render_markdown
from bot.surfaces.shell import Shell
from bot.surfaces.slack.blocks import FULL_REPORT
from tests.support.fakes.slack_api import FakeSlack
from tests.support.gitrepo import RepoBuilder
from tests.support.testdata import button_click
from tests.test_feedback import APPROVER, REQUESTER, analyzed, make_app
from tests.test_inbox import make_deployment
from tests.test_slack_threads import _analyze, _inbox

UNUSED = "import json\nimport os\nimport sys\n\n\ndef main():\n    return sys.argv\n"


def _shell_says(app: Runtime, line: str) -> str:
    out = io.StringIO()
    Shell(app.service, REQUESTER.user, Console(file=out, width=200)).handle(line)
    return out.getvalue()


def _apply(app: Runtime, ref: str) -> None:
    outcome = app.service.decide(APPROVER, ref, "approve")
    assert outcome.ok, outcome.message
    assert outcome.proposal is not None
    app.service.approvals.apply(outcome.proposal.id or 0)  # the apply job, run here


def test_the_shell_shows_a_stored_report_with_its_proposals_as_they_are_now(
    tmp_path: Path, repo: RepoBuilder
) -> None:
    for branch in ("feature/applied", "feature/rejected", "feature/open", "feature/old"):
        repo.branch(branch, "main")
        repo.commit({f"shop/{branch.split('/')[1]}.py": UNUSED})
    repo.checkout("main")
    app = make_app(tmp_path, repo)
    try:
        runs = {b: analyzed(app, f"feature/{b}").run_id for b in ("applied", "rejected", "open")}
        runs["old"] = analyzed(app, "feature/old").run_id
        for run_id in runs.values():
            assert [p.pid for p in app.service.proposals(run_id)] == ["P1"]
        first = _shell_says(app, f"status {runs['applied']}")
        assert "(waiting for approval)" in first  # before any decision
        assert f"type `approve {runs['applied']}/P1`" in first

        _apply(app, f"{runs['applied']}/P1")
        assert app.service.decide(APPROVER, f"{runs['rejected']}/P1", "reject", "not now").ok
        with session_scope(app.engine) as session:  # nobody decided within [approvals] ttl
            session.execute(
                update(ProposalRow)
                .where(ProposalRow.run_id == runs["old"])  # type: ignore[arg-type]
                .values(created_at=utcnow() - timedelta(days=2))
            )

        applied = _shell_says(app, f"status {runs['applied']}")
        [row] = app.service.proposals(runs["applied"])
        assert row.status == "applied" and row.result
        assert f"applied by {APPROVER.user}: {row.result}" in applied
        assert "waiting for approval" not in applied and "not applied" not in applied
        assert f"approve {runs['applied']}/P1" not in applied  # nothing left to approve

        rejected = _shell_says(app, f"status {runs['rejected']}")
        assert f"rejected by {APPROVER.user}, not applied" in rejected
        assert f"approve {runs['rejected']}/P1" not in rejected

        old = _shell_says(app, f"status {runs['old']}")
        assert "expired, not applied" in old
        assert f"approve {runs['old']}/P1" not in old

        still = _shell_says(app, f"status {runs['open']}")
        assert "(waiting for approval)" in still
        assert f"type `approve {runs['open']}/P1`" in still

        # The Markdown report (what the Full report button uploads) says the same.
        report = app.service.report(runs["applied"])
        assert report is not None
        markdown = render_markdown(report, app.service.proposal_states(runs["applied"]))
        assert f"**State: applied by {APPROVER.user}: " in markdown
        assert "State:" not in render_markdown(report)  # the command line's: no store, no state
    finally:
        app.close()


def test_slacks_full_report_shows_an_applied_proposal_as_applied(
    tmp_path: Path, repo: RepoBuilder
) -> None:
    deployment = make_deployment(tmp_path, repo)
    with FakeSlack() as slack:
        app = build_app(deployment.settings(slack))
        try:
            run_id = _analyze(app, slack, "1.1")
            outcome = app.service.decide(Actor("U222", "slack", "T111"), f"{run_id}/P1", "approve")
            assert outcome.ok, outcome.message
            assert outcome.proposal is not None
            app.service.approvals.apply(outcome.proposal.id or 0)
            click = button_click(FULL_REPORT, f"report:{run_id}", response_url=slack.response_url())
            _inbox(app, slack).receive(FULL_REPORT, "slack:action:full:9.9", click, list, list)
            [upload] = slack.shared_files
            content = upload["content"]
            text = content.decode() if isinstance(content, bytes) else content
            assert "**State: applied by U222: committed " in text
        finally:
            app.close()


def test_a_long_run_id_in_a_full_report_click_is_clipped(tmp_path: Path, repo: RepoBuilder) -> None:
    deployment = make_deployment(tmp_path, repo)
    with FakeSlack() as slack:
        app = build_app(deployment.settings(slack))
        try:
            value = "report:" + "f" * 5000  # a click's value is whatever the client sent
            click = button_click(FULL_REPORT, value, response_url=slack.response_url())
            _inbox(app, slack).receive(FULL_REPORT, "slack:action:full:9.9", click, list, list)
            [answer] = [r["text"] for r in slack.responses if "no report" in r["text"]]
            assert "f" * 60 + "..." in answer and len(answer) < 300
        finally:
            app.close()


def test_each_state_in_words() -> None:
    now = utcnow()

    def row(status: str, **values: Any) -> ProposalRow:
        return ProposalRow(
            run_id="r",
            pid="P1",
            kind="patch",
            agent="code_review",
            title="t",
            target="feature/x",
            base_sha="0" * 40,
            content="",
            content_sha256="0" * 64,
            status=status,
            created_at=values.pop("created_at", now),
            **values,
        )

    def words(proposal: ProposalRow) -> str:
        return states_of([proposal], ttl_s=3600, now=now)["P1"].words()

    assert words(row("proposed")) == "waiting for approval"
    assert words(row("proposed", created_at=now - timedelta(hours=2))) == "expired, not applied"
    assert words(row("approved", decided_by="U1")) == "approved by U1, not applied yet"
    assert words(row("applying", decided_by="U1")) == "approved by U1, being applied"
    assert (
        words(row("applied", decided_by="U1", result="committed abc to feature/x"))
        == "applied by U1: committed abc to feature/x"
    )
    assert words(row("rejected", decided_by="U1")) == "rejected by U1, not applied"
    assert words(row("expired")) == "expired, not applied"
    assert words(row("stale", result="the branch moved")) == "stale, not applied: the branch moved"
    assert words(row("failed", result="refused")) == "failed, not applied: refused"
    assert ProposalState("proposed").open and not ProposalState("applied").open
