"""The feedback loop end to end in process: a vote with a reason, curation, and the next run of
the same analysis changes (offline: the finding is gone; online: the learning is in the request
the fake model receives). Real git, real SQLite, the real anthropic client against the fake."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sqlmodel import select

from agents.llm import CostCapReached, Prompt
from agents.report import LLMCall, Report, Source
from bot.app import Runtime, build_app
from bot.core.actor import Actor, UserError
from bot.core.commands import AnalyzeBranch
from bot.core.digest import text
from bot.settings import Settings
from bot.store.db import session_scope
from bot.store.models import FeedbackRow
from bot.store.types import utcnow
from tests.support.fakes.anthropic_api import API_KEY, FakeAnthropic, Recorded
from tests.support.gitrepo import RepoBuilder

REQUESTER = Actor("UREQ", "shell")
ANA = Actor("UANA", "shell")
BEN = Actor("UBEN", "shell")
APPROVER = Actor("UAPPROVER", "shell")


def make_app(tmp_path: Path, repo: RepoBuilder, **settings: Any) -> Runtime:
    policy = tmp_path / "chatops.toml"
    policy.write_text(
        f'[repos.shop]\npath = "{repo.root}"\n\n[approvals]\napprovers = ["UAPPROVER"]\n'
    )
    return build_app(
        Settings(chatops_data_dir=tmp_path / "data", chatops_config=policy, **settings)
    )


def analyzed(app: Runtime, branch: str = "feature/planted") -> Report:
    requested = app.service.request_analysis(REQUESTER, AnalyzeBranch(branch))
    app.executor(requested.run.id)  # the job, run here instead of by a consumer
    report = app.service.report(requested.run.id)
    assert report is not None, app.service.status(requested.run.id).error
    return report


def spend(app: Runtime, run_id: str, usd: float, **tokens: int) -> None:
    """A model call that cost `usd`, recorded as the executor records them."""
    app.store.record_call(
        run_id,
        LLMCall(
            agent="code_review",
            model="claude-sonnet-5-5",
            prompt_version="v",
            cost_usd=usd,
            outcome="ok",
            **tokens,
        ),
    )


def number_of(report: Report, rule: str) -> str:
    [index] = [n for n, f in enumerate(report.findings, start=1) if f.rule == rule]
    return f"F{index}"


@pytest.fixture
def app(tmp_path: Path, planted_repo: RepoBuilder) -> Runtime:
    built = make_app(tmp_path, planted_repo)
    yield built
    built.close()


def test_a_rejected_finding_is_suppressed_offline_and_the_digest_shows_the_votes(
    app: Runtime,
) -> None:
    first = analyzed(app)
    shell_true = number_of(first, "B602")  # subprocess with shell=True
    target = first.findings[int(shell_true[1:]) - 1]
    feedback = app.service.feedback
    feedback.vote(ANA, first.run_id, shell_true, -1, via="shell", reason="name is validated")
    feedback.vote(ANA, first.run_id, "F1", 1, via="shell")

    curated = feedback.curate()
    kinds = {row.kind for row in curated.active}
    assert kinds == {"note"}  # one down-vote: a learning for the prompt, no suppression yet
    [note] = curated.active
    assert "name is validated" in note.text and note.agent == "code_review"

    second = analyzed(app)
    assert target.fingerprint in {f.fingerprint for f in second.findings}
    feedback.vote(BEN, second.run_id, target.fingerprint, -1, via="button", reason="by design")
    curated = feedback.curate()
    [suppress] = [row for row in curated.active if row.kind == "suppress"]
    assert suppress.fingerprint == target.fingerprint and "rejected 2 times" in suppress.text

    third = analyzed(app)
    assert target.fingerprint not in {f.fingerprint for f in third.findings}
    assert third.suppressed_findings == 1
    assert suppress.id in third.learnings_applied
    assert "1 finding(s) left out by the team's learnings" in third.summary
    # the rest of the report is untouched
    assert {f.fingerprint for f in first.findings} - {target.fingerprint} == {
        f.fingerprint for f in third.findings
    }

    digest = app.service.digests.build(app.service.digests.recent_period())
    [mode] = digest.failure_modes
    assert mode == ("code_review", "security B602", 2)  # category and rule, 2 down-votes
    code_review = digest.acceptance["code_review"]
    assert (code_review.up, code_review.down) == (1, 2)
    assert digest.runs == {"done": 3}


def test_forgetting_a_suppression_brings_the_finding_back_and_only_approvers_may(
    app: Runtime,
) -> None:
    first = analyzed(app)
    target = first.findings[0]
    for voter in (ANA, BEN):
        app.service.feedback.vote(voter, first.run_id, "F1", -1, via="shell")
    [suppress] = app.service.feedback.curate().active
    assert target.fingerprint not in {f.fingerprint for f in analyzed(app).findings}

    with pytest.raises(UserError, match="Only approvers may forget"):
        app.service.feedback.forget(ANA, suppress.id)
    forgotten = app.service.feedback.forget(APPROVER, suppress.id)
    assert forgotten.forgotten_by == "UAPPROVER"
    assert app.service.feedback.learnings() == []
    assert target.fingerprint in {f.fingerprint for f in analyzed(app).findings}
    # curating again does not bring a forgotten learning back
    assert app.service.feedback.curate().active == []
    with pytest.raises(UserError, match="No active learning"):
        app.service.feedback.forget(APPROVER, suppress.id)


def test_one_vote_per_user_per_item_the_latest_wins_and_a_reason_is_kept(app: Runtime) -> None:
    report = analyzed(app)
    app.service.feedback.vote(ANA, report.run_id, "F2", 1, via="shell")
    app.service.feedback.vote(ANA, report.run_id, "F2", -1, via="button")
    app.service.feedback.explain(
        ANA, report.run_id, report.findings[1].fingerprint, "noise", "nothing"
    )
    app.service.feedback.vote(
        ANA, report.run_id, "F2", -1, via="reaction"
    )  # same way again: no reason
    app.service.feedback.vote(ANA, report.run_id, None, 1, via="reaction")
    rows = app.service.feedback.store.votes()
    assert [(r.fingerprint, r.vote, r.reason, r.correction) for r in rows] == [
        (report.findings[1].fingerprint, -1, "noise", "nothing"),
        ("", 1, None, None),
    ]
    # a removed 👎 reaction does not take back the 👍 given since
    assert app.service.feedback.withdraw(ANA, report.run_id, -1) is False
    assert app.service.feedback.withdraw(ANA, report.run_id, 1) is True
    assert len(app.service.feedback.store.votes()) == 1


@pytest.mark.parametrize(
    ("item", "message"),
    [("F99", "has no F99"), ("G1", "not a finding"), ("0123456789abcdef", "not a finding")],
)
def test_a_vote_on_something_that_is_not_there_says_so(
    app: Runtime, item: str, message: str
) -> None:
    report = analyzed(app)
    with pytest.raises(UserError, match=message):
        app.service.feedback.vote(ANA, report.run_id, item, 1, via="shell")
    with pytest.raises(UserError, match="No run"):
        app.service.feedback.vote(ANA, "ffffffffffff", "F1", 1, via="shell")
    assert app.service.feedback.store.votes() == []


def test_export_writes_the_log_as_jsonl_and_csv(app: Runtime) -> None:
    report = analyzed(app)
    app.service.feedback.vote(
        ANA, report.run_id, "F1", -1, via="shell", reason='say "why", with, commas'
    )
    jsonl = io.StringIO()
    assert app.service.feedback.export(jsonl, "jsonl") == 1
    [row] = [json.loads(line) for line in jsonl.getvalue().splitlines()]
    finding = report.findings[0]
    assert row["item"] == finding.fingerprint and row["vote"] == -1
    assert row["reason"] == 'say "why", with, commas'
    assert json.loads(row["output"])["title"] == finding.title
    assert (row["agent"], row["source"], row["repo"]) == (
        finding.agent,
        finding.source.value,
        "shop",
    )
    table = io.StringIO()
    assert app.service.feedback.export(table, "csv") == 1
    [parsed] = list(csv.DictReader(io.StringIO(table.getvalue())))
    assert parsed["reason"] == 'say "why", with, commas' and parsed["vote"] == "-1"


def test_curation_changes_the_next_prompt_and_acceptance_is_per_prompt_version(
    tmp_path: Path, planted_repo: RepoBuilder
) -> None:
    finding = {
        "file": "shop/orders.py",
        "start_line": 10,
        "end_line": 12,
        "severity": "medium",
        "category": "error-handling",
        "title": "find_order returns None for a missing order",
        "detail": "fetchone() may be None.",
        "suggestion": "Raise NotFound.",
        "confidence": 0.7,
    }

    def review(body: dict[str, Any]) -> dict[str, Any]:
        user = Recorded("", {}, body, 0).user
        return {"findings": [finding] if "shop/orders.py" in user else [], "patches": []}

    with FakeAnthropic() as fake:
        fake.responders["code_review"] = review
        app = make_app(
            tmp_path,
            planted_repo,
            anthropic_api_key=API_KEY,
            anthropic_base_url=fake.base_url,
            chatops_count_tokens=False,
        )
        try:
            first = analyzed(app)
            [model] = [f for f in first.findings if f.source is Source.llm]
            number = f"F{first.findings.index(model) + 1}"
            app.service.feedback.vote(
                ANA,
                first.run_id,
                number,
                -1,
                via="shell",
                reason="callers check for None already",
                correction="No finding: find_order's callers handle None.",
            )
            [row] = app.service.feedback.store.votes()
            assert row.model == "claude-sonnet-5-5"
            assert row.prompt_version == first.prompt_versions["code_review"]
            [exported] = list(app.service.feedback.store.export_rows())
            assert exported["prompt"].startswith("# Role: code_review")  # the prompt it saw

            curated = app.service.feedback.curate()
            assert {r.kind for r in curated.active} == {"note", "example"}
            before = len(fake.messages("code_review"))
            second = analyzed(app)
        finally:
            app.close()
    [request] = fake.messages("code_review")[before:]
    assert "## Learnings from this team's feedback" in request.system
    assert "callers check for None already" in request.system
    assert "No finding: find_order's callers handle None." in request.system
    assert "## Learnings" not in fake.messages("code_review")[0].system
    assert second.prompt_versions["code_review"] != first.prompt_versions["code_review"]
    assert set(second.learnings_applied) == {r.id for r in curated.active}

    stats = app.service.feedback.acceptance()
    assert stats[("code_review", first.prompt_versions["code_review"])].down == 1


def test_the_daily_budget_refuses_new_runs_and_the_digest_says_so(
    tmp_path: Path, planted_repo: RepoBuilder
) -> None:
    app = make_app(tmp_path, planted_repo, chatops_daily_budget_usd=0.5)
    try:
        report = analyzed(app)  # offline: costs nothing, so allowed
        spend(app, report.run_id, 0.75)
        with pytest.raises(UserError, match=r"Today's model budget is spent: \$0.75 of \$0.50"):
            app.service.request_analysis(REQUESTER, AnalyzeBranch("feature/planted"))
        assert len(app.service.recent_runs()) == 1  # nothing half-made
        digest = app.service.digests.build(app.service.digests.recent_period())
        assert digest.refused_for_budget == 1
        assert "The daily budget was reached: 1 run request(s) refused." in text(digest)
        assert app.executor.budget.left() == 0.0
    finally:
        app.close()


def test_votes_survive_in_the_table_with_what_was_voted_on(app: Runtime) -> None:
    report = analyzed(app)
    app.service.feedback.vote(ANA, report.run_id, None, -1, via="shell", reason="too long")
    with session_scope(app.engine) as session:
        [row] = list(session.exec(select(FeedbackRow)))
    assert (row.agent, row.fingerprint, row.reason) == ("report", "", "too long")
    assert json.loads(row.output)["summary"] == report.summary


def test_runs_share_todays_budget_call_by_call_and_spend_counts_at_once(
    tmp_path: Path, planted_repo: RepoBuilder
) -> None:
    class Answer(BaseModel):
        findings: list[str]

    with FakeAnthropic() as fake:
        fake.responders["code_review"] = lambda body: {"findings": []}
        app = make_app(
            tmp_path,
            planted_repo,
            anthropic_api_key=API_KEY,
            anthropic_base_url=fake.base_url,
            chatops_daily_budget_usd=1.0,
            chatops_max_run_cost_usd=5.0,
        )
        try:
            run = app.service.request_analysis(REQUESTER, AnalyzeBranch("feature/planted")).run
            session = app.executor._session(run.id)
            assert session is not None
            prompt = Prompt("# Role: code_review\nReview.")
            session.structured(
                agent="code_review",
                model="claude-sonnet-5-5",
                prompt=prompt,
                user="hi",
                output=Answer,
                max_tokens=256,
            )
            # recorded as it ended, not when the run finishes: another run sees the spend now
            assert app.service.digests.stats.spent_usd(utcnow() - timedelta(hours=1)) > 0
            spend(app, run.id, 0.999)  # another run's calls
            left = session.budget_left() if session.budget_left else None
            assert left is not None and left < 0.001
            with pytest.raises(CostCapReached, match="today's budget"):
                session.structured(
                    agent="code_review",
                    model="claude-sonnet-5-5",
                    prompt=prompt,
                    user="a new question",  # "hi" again is answered from the kept answers
                    output=Answer,
                    max_tokens=256,
                )
            assert len(fake.messages()) == 1  # the refused call never left
        finally:
            app.close()
