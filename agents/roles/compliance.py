"""Compliance: how the branch meets its ticket's acceptance criteria, and a ticket comment.

Offline, the criteria are listed with the changed files and tests that mention their terms, and
the report says judging needs the model. With a model, each criterion is judged met, not met or
needs human verification, with evidence; the verdict is computed here from those judgments."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel, Field

from agents.budget import Unit
from agents.context import files as kinds
from agents.context.code import neutralise
from agents.context.jira import TicketContext
from agents.report import (
    Compliance,
    CriterionJudgment,
    Judgment,
    Proposal,
    ProposalKind,
    sha256_hex,
)
from agents.roles.base import PipelineState
from agents.roles.model import file_units, prompt_for, run_chunks
from agents.roles.risk import assess

_STOP = frozenset(
    (
        "that",
        "this",
        "with",
        "from",
        "have",
        "when",
        "then",
        "given",
        "should",
        "must",
        "will",
        "into",
        "user",
        "users",
        "able",
        "they",
        "their",
        "there",
        "which",
        "what",
        "where",
        "after",
        "before",
        "only",
        "also",
        "each",
    )
)


class JudgmentItem(BaseModel):
    index: int = Field(description="The criterion's number, from 1.")
    judgment: Judgment
    evidence: list[str] = Field(description="file:line references from the diff")
    reason: str


class ComplianceAnswer(BaseModel):
    judgments: list[JudgmentItem]


def verdict(judgments: Sequence[CriterionJudgment]) -> str:
    """fully: every criterion met; not_compliant: none met; partially: anything between."""
    marks = [j.judgment for j in judgments]
    if not marks or all(m == "unjudged" for m in marks):
        return "unjudged"
    if all(m == "met" for m in marks):
        return "fully"
    if not any(m == "met" for m in marks):
        return "not_compliant"
    return "partially"


def terms(criterion: str) -> set[str]:
    return {w for w in re.findall(r"[a-z][a-z0-9]{3,}", criterion.lower()) if w not in _STOP}


class ComplianceAgent:
    name = "compliance"
    description = "the ticket's acceptance criteria against the change; a ticket comment"

    def __init__(self, ticket: TicketContext) -> None:
        self.ticket = ticket

    def run(self, state: PipelineState) -> None:
        criteria = self.ticket.acceptance_criteria
        if state.llm is not None and criteria:
            judged = self._judge(state, criteria)
            note = ""
        else:
            judged = [self._mentions(state, c) for c in criteria]
            note = (
                "Judging the criteria needs the model (set ANTHROPIC_API_KEY); listed here "
                "with the changed files and tests that mention their terms."
                if criteria
                else "The ticket states no acceptance criteria."
            )
        state.compliance = Compliance(
            ticket=self.ticket.key,
            verdict=verdict(judged),  # type: ignore[arg-type]
            criteria=judged,
            note=note,
        )
        self._propose_comment(state)

    def _mentions(self, state: PipelineState, criterion: str) -> CriterionJudgment:
        wanted = terms(criterion)
        evidence: list[str] = []
        for diff in state.diff.files:
            hits = [
                n
                for n, text in diff.added_lines.items()
                if wanted & set(re.findall(r"[a-z][a-z0-9]{3,}", text.lower()))
            ]
            path_hit = wanted & set(re.findall(r"[a-z][a-z0-9]{3,}", diff.path.lower()))
            if hits or path_hit:
                tag = " (test)" if kinds.is_test_path(diff.path) else ""
                evidence.append(f"{diff.path}:{hits[0] if hits else 1}{tag}")
        return CriterionJudgment(
            criterion=criterion,
            judgment="unjudged",
            evidence=evidence[:8],
            reason="mentioned by the files listed"
            if evidence
            else "no changed file mentions its terms",
        )

    def _judge(self, state: PipelineState, criteria: list[str]) -> list[CriterionJudgment]:
        assert state.llm is not None
        listed = "\n".join(f"{n}. {neutralise(c)}" for n, c in enumerate(criteria, start=1))
        ticket = neutralise(
            f"{self.ticket.key}: {self.ticket.summary}\n\nDescription:\n"
            f"{self.ticket.description[:3000]}\n\nAcceptance criteria:\n{listed}"
        )
        units, _ = file_units(state)

        def message(chunk: Sequence[Unit]) -> str:
            code = "\n".join(unit.text for unit in chunk)
            return (
                f"<untrusted_ticket>\n{ticket}\n</untrusted_ticket>\n\nThe change:\n\n"
                f"<untrusted_diff>\n{code}\n</untrusted_diff>\n\nJudge every criterion."
            )

        answers = run_chunks(
            state,
            agent=self.name,
            model=state.llm.settings.model,
            prompt=prompt_for(state, "compliance"),
            units=units,
            user_message=message,
            output=ComplianceAnswer,
        )
        by_index: dict[int, JudgmentItem] = {}
        for answer, _ in answers:  # several calls: a criterion met in any part of it is met
            for item in answer.judgments:
                kept = by_index.get(item.index)
                if kept is None or (item.judgment == "met" and kept.judgment != "met"):
                    by_index[item.index] = item
        judged = []
        for n, criterion in enumerate(criteria, start=1):
            found = by_index.get(n)
            if found is None:
                judged.append(
                    CriterionJudgment(
                        criterion=criterion,
                        judgment="needs_human",
                        reason="the model gave no judgment",
                    )
                )
                continue
            judged.append(
                CriterionJudgment(
                    criterion=criterion,
                    judgment=found.judgment,
                    evidence=[neutralise(e)[:200] for e in found.evidence[:8]],
                    reason=neutralise(found.reason)[:500],
                )
            )
        return judged

    def _propose_comment(self, state: PipelineState) -> None:
        assert state.compliance is not None
        risk = assess(state.findings)
        rows = "\n".join(
            f"|{_wiki(j.criterion)}|{j.judgment.replace('_', ' ')}|"
            f"{_wiki(', '.join(j.evidence) or '-')}|"
            for j in state.compliance.criteria
        )
        table = f"||Criterion||Judgment||Evidence||\n{rows}\n" if rows else ""
        worst = [f for f in state.findings if f.severity.value in ("critical", "high")][:5]
        issues = "".join(
            f"* {_wiki(f.title)} ({_wiki(f.file or '')}:{f.start_line})\n" for f in worst
        )
        text = (
            f"h3. chatops review of {_wiki(state.diff.branch)}\n\n"
            f"Risk: *{risk.level.value.upper()}* ({risk.score}/100). Compliance with the "
            f"acceptance criteria: *{state.compliance.verdict.replace('_', ' ')}*.\n\n"
            f"{table}"
            + (f"\nMost important findings:\n{issues}" if issues else "")
            + (f"\n{_wiki(state.compliance.note)}\n" if state.compliance.note else "")
        )
        state.proposals.append(
            Proposal(
                id=state.next_proposal_id(),
                kind=ProposalKind.jira_comment,
                agent=self.name,
                title=f"Comment on {self.ticket.key} with this review",
                target=self.ticket.key,
                base_sha=state.diff.head_sha,
                content=text,
                content_sha256=sha256_hex(text),
            )
        )


def _wiki(text: str) -> str:
    """Untrusted text in Jira wiki markup: no table breaks, links, macros or mentions."""
    cleaned = " ".join(text.split())
    return re.sub(r"([|\[\]{}!~^+*_#-])", r"\\\1", cleaned)[:500]
