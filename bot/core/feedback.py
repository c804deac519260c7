"""The feedback use cases: vote on a report or a finding, say what was wrong, curate the votes
into learnings, list and forget them, measure acceptance, export the log."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TextIO

from sqlalchemy.exc import IntegrityError

from agents.errors import shown
from agents.learnings import Learnings
from agents.report import Finding, Report
from bot.config import PolicyConfig
from bot.core.actor import Actor, UserError
from bot.core.curation import curate
from bot.store.feedback import FeedbackStore, Vote
from bot.store.models import FeedbackRow, LearningRow, Run
from bot.store.runs import RunStore
from bot.store.stats import Acceptance as Acceptance  # re-exported: the Home tab shows it
from bot.store.stats import Stats
from bot.store.types import utcnow

if TYPE_CHECKING:
    from bot.core.policy import Decision

_FINDING_NUMBER = re.compile(r"[Ff](\d{1,4})")
_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
REPORT = "report"  # the agent of a vote on a whole report


@dataclass(frozen=True)
class Voted:
    run: Run
    item: str  # F3, or "the report"
    fingerprint: str  # "" for the report
    row: FeedbackRow

    @property
    def message(self) -> str:
        thumb = "👍" if self.row.vote > 0 else "👎"
        return f"Recorded {thumb} on {self.item} of run {self.run.id}."


@dataclass(frozen=True)
class Curated:
    added: list[str]
    retired: list[str]
    active: list[LearningRow]

    @property
    def message(self) -> str:
        return (
            f"Curated: {len(self.active)} learning(s) active, {len(self.added)} new, "
            f"{len(self.retired)} retired. The next run of each changed agent uses a new prompt "
            "version."
        )


def finding_ref(report: Report, finding: Finding) -> str:
    """F1, F2 ... in the report's order: what a person types in the shell."""
    return f"F{report.findings.index(finding) + 1}"


class FeedbackService:
    def __init__(
        self,
        runs: RunStore,
        store: FeedbackStore,
        stats: Stats,
        policy: PolicyConfig,
        is_approver: Callable[[Actor], Decision],
        same_team: Callable[[Actor], bool] = lambda actor: True,
    ) -> None:
        self.same_team = same_team
        self.runs = runs
        self.store = store
        self.stats = stats
        self.policy = policy
        self.is_approver = is_approver

    # -- votes ---------------------------------------------------------------------------------

    def vote(
        self,
        actor: Actor,
        run_id: str,
        item: str | None,
        value: int,
        *,
        via: str,
        reason: str | None = None,
        correction: str | None = None,
    ) -> Voted:
        """`item`: None or "report" for the whole report, `F3`, or a finding's fingerprint."""
        if not self.same_team(actor):
            raise UserError(
                "Only members of this workspace can vote: votes change what later runs report.",
            )
        run, report = self._report(run_id)
        finding = self._finding(report, item)
        if finding is None:
            vote = Vote(
                run_id=run.id,
                fingerprint="",
                user=actor.user,
                vote=value,
                repo=run.repo,
                agent=REPORT,
                model=(report.usage.model or "").split(", ")[-1],  # the main model
                output=json.dumps(
                    {"summary": report.summary, "risk": report.risk.model_dump(mode="json")}
                ),
                via=via,
                reason=_clean(reason),
                correction=_clean(correction),
            )
            label = "the report"
        else:
            vote = _finding_vote(
                run,
                finding,
                actor,
                value,
                model=_model(report, finding),
                prompt_versions=report.prompt_versions,
                via=via,
                reason=reason,
                correction=correction,
            )
            label = finding_ref(report, finding)
        row = self.store.record(_fitted(vote))
        return Voted(run, label, vote.fingerprint, row)

    def vote_before_report(
        self,
        actor: Actor,
        run: Run,
        finding: Finding,
        label: str,
        *,
        model: str,
        prompt_versions: dict[str, str],
        via: str,
        reason: str,
    ) -> Voted:
        """A 👎 with its reason on a finding of a run that has no report yet (dropped at a
        human checkpoint): the same row a vote on the report's finding makes."""
        if not self.same_team(actor):
            raise UserError(
                "Only members of this workspace can vote: votes change what later runs report.",
            )
        vote = _finding_vote(
            run,
            finding,
            actor,
            -1,
            model=model,
            prompt_versions=prompt_versions,
            via=via,
            reason=reason,
            correction=None,
        )
        row = self.store.record(_fitted(vote))
        return Voted(run, label, vote.fingerprint, row)

    def explain(
        self, actor: Actor, run_id: str, fingerprint: str, reason: str, correction: str | None
    ) -> None:
        """What was wrong, from the down-vote modal. Records the down-vote too, so a modal
        submitted after the vote was changed elsewhere still keeps the reason."""
        text = _clean(reason)
        if not text:
            raise UserError("Say what was wrong.", "One sentence is enough.")
        if not self.store.explain(run_id, fingerprint, actor.user, text, _clean(correction)):
            self.vote(
                actor,
                run_id,
                fingerprint or None,
                -1,
                via="modal",
                reason=text,
                correction=correction,
            )

    def withdraw(self, actor: Actor, run_id: str, value: int) -> bool:
        """A removed reaction takes back that report vote (not a later one the other way)."""
        return self.store.withdraw(run_id, "", actor.user, value)

    # -- learnings -----------------------------------------------------------------------------

    def curate(self) -> Curated:
        specs = curate(self.store.votes(), self.policy.feedback)
        try:
            added, retired = self.store.save_learnings(specs)
        except IntegrityError:  # another curation committed first: ours is the same, redo
            added, retired = self.store.save_learnings(specs)
        return Curated(added, retired, self.store.learnings())

    def learnings(self, repo: str | None = None) -> list[LearningRow]:
        if repo is not None and repo not in self.policy.repos:
            known = ", ".join(sorted(self.policy.repos))
            raise UserError(f"Unknown repository {shown(repo)!r}.", f"Known: {known}.")
        return self.store.learnings(repo)

    def learnings_for(self, repo: str) -> Learnings:
        return self.store.for_repo(repo)

    def forget(self, actor: Actor, learning_id: str) -> LearningRow:
        decision = self.is_approver(actor)
        if not decision.allowed:
            raise UserError(
                f"Only approvers may forget a learning: {decision.reason}.",
                "Ask one of the approvers in the policy file.",
            )
        row = self.store.forget(learning_id.strip(), actor.user)
        if row is None:
            raise UserError(
                f"No active learning {shown(learning_id)!r}.",
                "`learnings` lists them with their ids.",
            )
        return row

    # -- measuring -----------------------------------------------------------------------------

    def acceptance(self, since: datetime | None = None) -> dict[tuple[str, str], Acceptance]:
        return self.stats.acceptance(since, by_version=True)

    def team_acceptance(self, days: int = 30) -> Acceptance:
        """Every agent's votes of the last `days` together (the Home tab's figure)."""
        since = utcnow() - timedelta(days=days)
        return sum(self.stats.acceptance(since).values(), Acceptance(0, 0))

    def export(self, out: TextIO, fmt: str, since: datetime | None = None) -> int:
        rows = self.store.export_rows(since)
        count = 0
        if fmt == "jsonl":
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
            return count
        writer: csv.DictWriter[str] | None = None
        for row in rows:
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
            count += 1
        return count

    # -- helpers -------------------------------------------------------------------------------

    def _report(self, run_id: str) -> tuple[Run, Report]:
        run = self.runs.get(run_id.strip())
        if run is None:
            raise UserError(f"No run {shown(run_id)!r}.", "`status` lists your recent runs.")
        report = self.runs.report(run.id)
        if report is None:
            raise UserError(
                f"Run {run.id} has no report to vote on ({run.status}).",
                f"Vote once its report is shown; `status {run.id}` says where it is.",
            )
        return run, report

    @staticmethod
    def _finding(report: Report, item: str | None) -> Finding | None:
        if item is None or item.lower() == REPORT:
            return None
        number = _FINDING_NUMBER.fullmatch(item)
        if number is not None:
            index = int(number.group(1))
            if 1 <= index <= len(report.findings):
                return report.findings[index - 1]
            raise UserError(
                f"The report has no {item.upper()}: it has {len(report.findings)} finding(s).",
                "Findings are numbered F1, F2 ... in the report.",
            )
        if _FINGERPRINT.fullmatch(item):
            for finding in report.findings:
                if finding.fingerprint == item:
                    return finding
        raise UserError(f"{shown(item)!r} is not a finding of this report.", "Use F1, F2 ...")


def _finding_vote(
    run: Run,
    finding: Finding,
    actor: Actor,
    value: int,
    *,
    model: str,
    prompt_versions: dict[str, str],
    via: str,
    reason: str | None,
    correction: str | None,
) -> Vote:
    return Vote(
        run_id=run.id,
        fingerprint=finding.fingerprint,
        user=actor.user,
        vote=value,
        repo=run.repo,
        agent=finding.agent,
        category=finding.category,
        rule=finding.rule,
        file=finding.file,
        source=finding.source.value,
        model=model,
        prompt_version=prompt_versions.get(finding.agent, "")
        if finding.source.value == "llm"
        else "",
        output=finding.model_dump_json(
            include={"title", "detail", "suggestion", "severity", "file", "start_line"}
        ),
        via=via,
        reason=_clean(reason),
        correction=_clean(correction),
    )


def _fitted(vote: Vote) -> Vote:
    """Within the columns' sizes (PostgreSQL refuses longer values; SQLite would keep them)."""
    return replace(
        vote,
        agent=vote.agent[:64],
        category=vote.category[:64],
        rule=vote.rule[:64],
        file=vote.file[:1024] if vote.file else vote.file,
        source=vote.source[:16],
        model=vote.model[:64],
        prompt_version=vote.prompt_version[:32],
        user=vote.user[:64],
    )


def _model(report: Report, finding: Finding) -> str:
    if finding.source.value != "llm":
        return ""
    for call in report.llm_calls:
        if call.agent == finding.agent and call.outcome == "ok":
            return call.model
    return report.usage.model or ""


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    text = text.strip()[:2000]
    return text or None
