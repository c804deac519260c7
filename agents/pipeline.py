"""Runs the agents in order over a shared state and assembles the report.

After each agent the pipeline calls the checkpoint with everyone's progress; a checkpoint that
returns False (a human asked to stop) ends the run there, and the report says so.

`run_step()` runs the same loop one agent at a time, for a run with a human checkpoint after each
agent: it returns a `Paused` (what the next leg needs, as JSON a store can keep) until the last
agent, then the report. A leg can start in another process: the workspace is prepared again from
the same head and merge-base.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from agents.analyzers.flags import FlagSettings
from agents.context.git import DiffContext, GitRepo, diff_of, resolve_range
from agents.context.guidance import read_guidance
from agents.context.jira import TicketContext
from agents.context.workspace import prepare
from agents.learnings import Learnings
from agents.llm import LLMError, LLMSession
from agents.report import (
    AgentRun,
    AgentState,
    Compliance,
    Coverage,
    Finding,
    LLMCall,
    Proposal,
    Report,
    Reuse,
    SkippedFile,
    Target,
    TicketInfo,
    Usage,
    number_repeats,
)
from agents.reuse import PROCESS_ANSWERS, AnswerStore, code_version, key_of, recall, remember
from agents.roles.base import Agent, PipelineState

log = logging.getLogger(__name__)

AgentStatus = Literal["waiting", "running", "done", "failed", "cancelled"]


@dataclass
class AgentProgress:
    name: str
    status: AgentStatus = "waiting"
    duration_ms: int = 0
    error: str | None = None


@dataclass
class Progress:
    run_id: str
    agents: list[AgentProgress] = field(default_factory=list)


# Called whenever an agent starts or ends. Returning False asks the run to stop; the pipeline
# honours it after the agent in flight finishes.
Checkpoint = Callable[[Progress], bool]


def default_agents(
    ticket: TicketContext | None = None, flags: FlagSettings | None = None
) -> list[Agent]:
    # Risk runs after the analysts: its verdict weighs their findings. Compliance, for a ticket,
    # comes last: its comment quotes everything.
    # Imported here: a report given again (see `analyze_branch`) loads none of the analyzers.
    from agents.roles.code_review import CodeReviewAgent
    from agents.roles.compliance import ComplianceAgent
    from agents.roles.dependencies import DependenciesAgent
    from agents.roles.feature_flags import FeatureFlagsAgent
    from agents.roles.risk import RiskAgent
    from agents.roles.tests import TestsAgent

    # Feature flags (the policy's `[flags]`, default: the SDKs' call shapes only) before risk.
    agents: list[Agent] = [
        CodeReviewAgent(),
        TestsAgent(),
        DependenciesAgent(),
        FeatureFlagsAgent(flags),
        RiskAgent(),
    ]
    if ticket is not None:
        agents.append(ComplianceAgent(ticket))
    return agents


def analyze_branch(
    repo_path: str | os.PathLike[str],
    branch: str,
    base: str | None = None,
    *,
    checkpoint: Checkpoint | None = None,
    run_id: str | None = None,
    agents: Sequence[Agent] | None = None,
    llm: LLMSession | None = None,
    ticket: TicketContext | None = None,
    learnings: Learnings | None = None,
    kept: AnswerStore | None = None,
    flags: FlagSettings | None = None,
) -> Report:
    """Analyze `branch` of the repository at `repo_path` against `base` (default branch if None).

    With `llm`, the agents also ask the model; without, the analyzers alone make the report.
    `learnings` (curated from the team's votes) rule out findings and, online, join the prompts.
    `kept`: where the analyzers keep each file's answer by its content (default: this process).
    `flags`: the policy's `[flags]` for the feature-flag agent (default agents only).
    Raises AnalysisInputError for anything the user can fix (bad names, nothing to analyze).
    """
    repo = GitRepo.open(repo_path)
    commits = resolve_range(repo, branch, base)
    # The same question as a complete run before (a CI job re-run on the same commit): its
    # report, said to be reused. Only with a store given, and only for the default agents.
    whole = kept is not None and agents is None and ticket is None
    key = _report_key(commits, llm, learnings) if whole else ""
    if key and flags is not None:  # what the flag agent reads is part of the question
        key = key_of("report", key, repr(flags))
    if kept is not None and key:
        earlier = _reused_report(kept, key, run_id)
        if earlier is not None:
            return earlier
    diff = diff_of(commits)
    if agents is None and flags is not None:
        agents = default_agents(ticket, flags)
    report = run_pipeline(
        diff,
        checkpoint=checkpoint,
        run_id=run_id,
        agents=agents,
        llm=llm,
        ticket=ticket,
        learnings=learnings,
        kept=kept,
    )
    if kept is not None and key and _reusable(report):
        remember(kept, key, "report", report.model_dump_json())
    return report


def _report_key(diff: DiffContext, llm: LLMSession | None, learnings: Learnings | None) -> str:
    """Everything a report depends on: the commits (head and merge-base), the names it shows,
    this code and its tools (`code_version`), the model settings and the learnings."""
    model = "offline"
    if llm is not None:
        s = llm.settings
        model = repr(
            (s.model, s.fast_model, s.input_budget_tokens, s.max_output_tokens, s.validate)
        )
    taught = repr(learnings) if learnings else ""
    target = (diff.repo_label, diff.branch, diff.base, diff.head_sha, diff.base_sha)
    return key_of("report", code_version(), repr(target), model, taught)


def _reusable(report: Report) -> bool:
    """A report worth giving again: every agent finished, every part ran, the model (if any)
    reviewed every file. A partial report is asked again, never repeated."""
    return (
        report.complete
        and not report.coverage.not_run
        and not report.stopped_early
        and not any("not reviewed by the model" in s.reason for s in report.coverage.files_skipped)
    )


def _reused_report(kept: AnswerStore, key: str, run_id: str | None) -> Report | None:
    stored = recall(kept, key)
    if stored is None:
        return None
    try:
        earlier = Report.model_validate_json(stored)
    except ValueError:  # kept by an older version of the report: analyze again
        return None
    reuse = Reuse(report_of=earlier.run_id)
    return earlier.model_copy(
        update={
            "run_id": run_id or uuid.uuid4().hex[:12],
            "usage": Usage(),
            "llm_calls": [],
            "reuse": reuse,
            "summary": f"{earlier.summary} Nothing it depends on changed since run "
            f"{earlier.run_id}, so this is that run's report, not analyzed again.",
        }
    )


def run_pipeline(
    diff: DiffContext,
    *,
    checkpoint: Checkpoint | None = None,
    run_id: str | None = None,
    agents: Sequence[Agent] | None = None,
    llm: LLMSession | None = None,
    ticket: TicketContext | None = None,
    learnings: Learnings | None = None,
    kept: AnswerStore | None = None,
) -> Report:
    report = _run(
        diff,
        checkpoint=checkpoint,
        run_id=run_id or uuid.uuid4().hex[:12],
        agents=agents,
        llm=llm,
        ticket=ticket,
        learnings=learnings,
        kept=kept,
    )
    assert isinstance(report, Report)
    return report


class SavedAgent(BaseModel):
    name: str
    status: AgentStatus = "waiting"
    duration_ms: int = 0
    error: str | None = None


class DroppedFinding(BaseModel):
    """A finding a human dropped at a checkpoint ("not a problem"): later agents never see it."""

    fingerprint: str
    title: str
    agent: str
    by: str
    reason: str


class Saved(BaseModel):
    """Everything the next leg of a stepped run needs, kept between legs (as JSON): the commits,
    every agent's state, and what the agents so far produced and the human let through."""

    branch: str
    base: str
    head_sha: str
    base_sha: str
    agents: list[SavedAgent]
    new_from: int = 0  # the last agent's findings are `findings[new_from:]`
    findings: list[Finding] = Field(default_factory=list)
    # Fingerprints in the order they were numbered (F1 ...), a dropped one kept in its place:
    # a number shown at a checkpoint names the same finding after other drops.
    numbered: list[str] = Field(default_factory=list)
    proposals: list[Proposal] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    not_run: list[str] = Field(default_factory=list)
    model_skipped: dict[str, str] = Field(default_factory=dict)
    prompt_versions: dict[str, str] = Field(default_factory=dict)
    dropped_unsupported: int = 0
    model_summary: str = ""
    compliance: Compliance | None = None
    learnings_applied: list[str] = Field(default_factory=list)
    suppressed: int = 0
    units_reused: int = 0
    units_sent: int = 0
    calls: list[LLMCall] = Field(default_factory=list)
    reused_calls: int = 0
    dropped: list[DroppedFinding] = Field(default_factory=list)

    @property
    def after(self) -> str:
        """The agent the run waits after."""
        done = [a.name for a in self.agents if a.status in ("done", "failed")]
        return done[-1] if done else ""

    @property
    def next_agent(self) -> str:
        waiting = [a.name for a in self.agents if a.status == "waiting"]
        return waiting[0] if waiting else ""

    def number(self, finding: Finding) -> int:
        """A finding's number (F1 ...), which a drop of another does not change."""
        if finding.fingerprint in self.numbered:
            return self.numbered.index(finding.fingerprint) + 1
        return self.findings.index(finding) + 1  # a state kept before numbers were

    def new_findings(self) -> list[tuple[int, Finding]]:
        """The last agent's findings, each with its number (F1 ...) among the findings so far."""
        return [(self.number(f), f) for i, f in enumerate(self.findings) if i >= self.new_from]

    def find(self, item: str) -> Finding | None:
        """A finding still let through, by its number (F2) or fingerprint; None for a number
        that names a finding already dropped."""
        text = item.strip()
        if text[:1] in ("F", "f") and text[1:].isdigit():
            index = int(text[1:])
            if self.numbered:
                if not 1 <= index <= len(self.numbered):
                    return None
                text = self.numbered[index - 1]
            else:
                return self.findings[index - 1] if 1 <= index <= len(self.findings) else None
        return next((f for f in self.findings if f.fingerprint == text), None)

    def without(self, finding: Finding, by: str, reason: str) -> Saved:
        """This state with `finding` dropped by a human, and the reason kept."""
        index = self.findings.index(finding)
        findings = [f for f in self.findings if f.fingerprint != finding.fingerprint]
        dropped = DroppedFinding(
            fingerprint=finding.fingerprint,
            title=finding.title,
            agent=finding.agent,
            by=by,
            reason=reason,
        )
        return self.model_copy(
            update={
                "findings": findings,
                "new_from": self.new_from - (1 if index < self.new_from else 0),
                "dropped": [*self.dropped, dropped],
            }
        )


@dataclass
class Paused:
    """A stepped run after an agent, before the next: `saved` is what the next leg starts from."""

    saved: Saved
    progress: Progress


def run_step(
    diff: DiffContext,
    *,
    saved: Saved | None,
    run_id: str,
    stop: str | None = None,
    checkpoint: Checkpoint | None = None,
    agents: Sequence[Agent] | None = None,
    llm: LLMSession | None = None,
    ticket: TicketContext | None = None,
    learnings: Learnings | None = None,
    kept: AnswerStore | None = None,
) -> Report | Paused:
    """One leg of a run with a human checkpoint after each agent: from `saved` (None: the
    start) the next agent, then a `Paused`; after the last agent, the report. `stop`: a human
    (or the checkpoint's deadline) ended it there: no agent more, the report of what was let
    through so far, stopped early, with `stop` said in its summary."""
    return _run(
        diff,
        checkpoint=checkpoint,
        run_id=run_id,
        agents=agents,
        llm=llm,
        ticket=ticket,
        learnings=learnings,
        kept=kept,
        step=True,
        saved=saved,
        stop=stop,
    )


def _run(
    diff: DiffContext,
    *,
    checkpoint: Checkpoint | None,
    run_id: str,
    agents: Sequence[Agent] | None,
    llm: LLMSession | None,
    ticket: TicketContext | None,
    learnings: Learnings | None,
    kept: AnswerStore | None,
    step: bool = False,
    saved: Saved | None = None,
    stop: str | None = None,
) -> Report | Paused:
    steps = list(agents) if agents is not None else default_agents(ticket)
    progress = Progress(run_id=run_id, agents=[AgentProgress(a.name) for a in steps])
    if saved is not None:
        # By name: a deploy (or a changed policy) between legs may change the agents. One the
        # run has not seen before starts as waiting; none is taken for done by its position.
        kept_states = {was.name: was for was in saved.agents}
        for status in progress.agents:
            was = kept_states.get(status.name)
            if was is not None:
                status.status, status.duration_ms, status.error = (
                    was.status,
                    was.duration_ms,
                    was.error,
                )
    dropped = {d.fingerprint for d in saved.dropped} if saved is not None else set()

    def tell() -> bool:
        return checkpoint(progress) if checkpoint else True

    stopped = stop is not None
    with prepare(diff) as workspace:
        state = PipelineState(
            diff=diff,
            workspace=workspace,
            llm=llm,
            guidance=read_guidance(diff) if llm is not None else "",
            learnings=learnings or Learnings(),
            kept=kept if kept is not None else PROCESS_ANSWERS,
        )
        if saved is not None:
            _restore(state, saved)
        if stop:
            state.note(stop)
        tell()
        for index, (agent, status) in enumerate(zip(steps, progress.agents, strict=True)):
            if status.status in ("done", "failed"):  # an earlier leg ran it
                continue
            if stopped:
                status.status = "cancelled"
                continue
            status.status = "running"
            tell()
            started = time.perf_counter()
            before = len(state.findings)
            try:
                agent.run(state)
                status.status = "done"
            except LLMError as exc:  # the analyzers' findings so far stay in the report
                log.warning("agent %s: model call failed in run %s: %s", agent.name, run_id, exc)
                status.status = "failed"
                status.error = str(exc)[:500]
                state.did_not_run(f"the model layer of {agent.name}", str(exc)[:300])
                if agent.name == "code_review":  # the agent that reviews the files themselves
                    for file in state.workspace.analyzed:
                        reason = f"the model could not be reached: {exc}"[:200]
                        state.skip_for_model(file.path, reason)
            except Exception as exc:  # one agent's failure must not lose the others' results
                log.warning("agent %s failed in run %s: %s", agent.name, run_id, exc)
                log.debug("agent %s traceback", agent.name, exc_info=True)
                status.status = "failed"
                status.error = f"{type(exc).__name__}: {exc}"[:500]
            finally:
                state.findings[before:] = number_repeats(state.findings[before:])
                _apply_learnings(state)
                if dropped:  # what a human dropped at a checkpoint stays dropped
                    state.findings[:] = [f for f in state.findings if f.fingerprint not in dropped]
            status.duration_ms = int((time.perf_counter() - started) * 1000)
            if not tell():
                stopped = True
            elif step and index < len(steps) - 1:
                return Paused(_save(state, progress, saved, diff, new_from=before), progress)
        if stopped:
            tell()
        if saved is not None:
            for gone in saved.dropped:
                state.note(
                    f"Dropped at a checkpoint by {gone.by} as not a problem: "
                    f"{gone.title!r} ({gone.agent}): {gone.reason}"
                )
        report = _assemble(run_id, diff, state, progress, stopped, saved)
    if ticket is not None:
        report.ticket = TicketInfo(
            key=ticket.key,
            summary=ticket.summary,
            status=ticket.status,
            type=ticket.type,
            criteria_source=ticket.criteria_source,
            truncated=ticket.truncated,
        )
    report.compliance = state.compliance
    return report


def _restore(state: PipelineState, saved: Saved) -> None:
    """What the earlier legs produced (and the human let through), into this leg's state."""
    state.findings[:] = list(saved.findings)
    state.proposals[:] = list(saved.proposals)
    state.notes[:] = list(saved.notes)
    state.not_run[:] = list(saved.not_run)
    state.model_skipped.update(saved.model_skipped)
    state.prompt_versions.update(saved.prompt_versions)
    state.dropped_unsupported = saved.dropped_unsupported
    state.model_summary = saved.model_summary
    state.compliance = saved.compliance
    state.learnings_applied |= set(saved.learnings_applied)
    state.suppressed = saved.suppressed
    state.units_reused, state.units_sent = saved.units_reused, saved.units_sent


def _save(
    state: PipelineState, progress: Progress, saved: Saved | None, diff: DiffContext, new_from: int
) -> Saved:
    calls = (saved.calls if saved else []) + (list(state.llm.calls) if state.llm else [])
    reused = (saved.reused_calls if saved else 0) + (state.llm.reused_calls if state.llm else 0)
    return Saved(
        branch=diff.branch,
        base=diff.base,
        head_sha=diff.head_sha,
        base_sha=diff.base_sha,
        agents=[
            SavedAgent(name=p.name, status=p.status, duration_ms=p.duration_ms, error=p.error)
            for p in progress.agents
        ],
        new_from=min(new_from, len(state.findings)),
        findings=list(state.findings),
        numbered=_numbered(saved, state.findings),
        proposals=list(state.proposals),
        notes=list(state.notes),
        not_run=list(state.not_run),
        model_skipped=dict(state.model_skipped),
        prompt_versions=dict(state.prompt_versions),
        dropped_unsupported=state.dropped_unsupported,
        model_summary=state.model_summary,
        compliance=state.compliance,
        learnings_applied=sorted(state.learnings_applied),
        suppressed=state.suppressed,
        units_reused=state.units_reused,
        units_sent=state.units_sent,
        calls=calls,
        reused_calls=reused,
        dropped=list(saved.dropped) if saved else [],
    )


def _numbered(saved: Saved | None, findings: list[Finding]) -> list[str]:
    """The numbering so far, with the findings not numbered yet after it."""
    order = list(saved.numbered) if saved else []
    if saved and not order:  # a state kept before numbers were: they were positions
        order = [f.fingerprint for f in saved.findings]
    known = set(order)
    for finding in findings:
        if finding.fingerprint not in known:
            order.append(finding.fingerprint)
            known.add(finding.fingerprint)
    return order


def _apply_learnings(state: PipelineState) -> None:
    """Drop what the team's learnings rule out, before later agents weigh the findings."""
    if not state.learnings:
        return
    kept, dropped = state.learnings.filter(state.findings)
    state.findings[:] = kept
    state.suppressed += sum(dropped.values())
    state.learnings_applied |= set(dropped)


def dedupe(findings: list[Finding]) -> list[Finding]:
    """One finding per fingerprint (the most severe, then the most confident), worst first."""
    best: dict[str, Finding] = {}
    for finding in findings:
        kept = best.get(finding.fingerprint)
        if kept is None or (finding.severity.rank, finding.confidence) > (
            kept.severity.rank,
            kept.confidence,
        ):
            best[finding.fingerprint] = finding
    return sorted(
        best.values(),
        key=lambda f: (-f.severity.rank, f.file or "", f.start_line or 0, f.title),
    )


def _assemble(
    run_id: str,
    diff: DiffContext,
    state: PipelineState,
    progress: Progress,
    stopped: bool,
    saved: Saved | None = None,
) -> Report:
    findings = dedupe(state.findings)
    from agents.roles.risk import assess

    risk = assess(findings)
    agents = [
        AgentRun(name=p.name, status=_final(p.status), duration_ms=p.duration_ms, error=p.error)
        for p in progress.agents
    ]
    skipped = [SkippedFile(file=p, reason=r) for p, r in sorted(state.workspace.skipped)]
    skipped += [
        SkippedFile(file=p, reason=f"not reviewed by the model ({r}); the analyzers ran")
        for p, r in sorted(state.model_skipped.items())
    ]
    coverage = Coverage(
        files_analyzed=sorted(f.path for f in state.workspace.analyzed),
        files_skipped=skipped,
        not_run=list(state.not_run),
    )
    calls = (saved.calls if saved else []) + (
        list(state.llm.calls) if state.llm is not None else []
    )
    reused = saved.reused_calls if saved else 0
    return Report(
        run_id=run_id,
        target=Target(
            repo=diff.repo_label,
            branch=diff.branch,
            base=diff.base,
            head_sha=diff.head_sha,
            base_sha=diff.base_sha,
        ),
        summary=_summary(findings, len(state.proposals), coverage, agents, state, stopped, reused),
        risk=risk,
        findings=findings,
        proposals=state.proposals,
        coverage=coverage,
        usage=_usage(calls),
        reuse=_reuse(state, reused),
        agents=agents,
        stopped_early=stopped,
        llm_calls=calls,
        prompt_versions=dict(state.prompt_versions),
        dropped_unsupported=state.dropped_unsupported,
        learnings_applied=sorted(state.learnings_applied),
        suppressed_findings=state.suppressed,
        # A verdict needs every agent: risk weighs what all of them found.
        complete=all(a.status == "done" for a in agents),
    )


def _usage(calls: list[LLMCall]) -> Usage:
    if not calls:
        return Usage()
    return Usage(
        model=", ".join(sorted({call.model for call in calls})),
        input_tokens=sum(c.input_tokens for c in calls),
        output_tokens=sum(c.output_tokens for c in calls),
        cache_read_tokens=sum(c.cache_read_tokens for c in calls),
        cache_write_tokens=sum(c.cache_write_tokens for c in calls),
        cost_usd=round(sum(c.cost_usd for c in calls), 6),
    )


def _reuse(state: PipelineState, earlier_calls: int = 0) -> Reuse:
    if state.llm is None:
        return Reuse()
    return Reuse(
        calls=state.llm.reused_calls + earlier_calls,
        units_reused=state.units_reused,
        units_sent=state.units_sent,
    )


def _final(status: AgentStatus) -> AgentState:
    """An agent that never finished was cancelled."""
    if status == "done" or status == "failed":
        return status
    return "cancelled"


def _summary(
    findings: list[Finding],
    proposals: int,
    coverage: Coverage,
    agents: list[AgentRun],
    state: PipelineState,
    stopped: bool,
    earlier_calls: int = 0,
) -> str:
    analyzed = len(coverage.files_analyzed)
    skipped = len(coverage.files_skipped)
    files = f"{analyzed} file(s) analyzed" + (f", {skipped} skipped" if skipped else "")
    text = f"{state.model_summary} " if state.model_summary else ""
    if findings:
        counts: dict[str, int] = {}
        for finding in findings:
            counts[finding.severity.value] = counts.get(finding.severity.value, 0) + 1
        listed = ", ".join(f"{n} {sev}" for sev, n in counts.items())
        text += f"{len(findings)} finding(s) ({listed}); {files}."
    else:
        text += f"No issues found; {files}."
    if state.dropped_unsupported:
        text += (
            f" Validation dropped {state.dropped_unsupported} model finding(s) the diff does "
            "not support."
        )
    if proposals:
        text += f" {proposals} proposed change(s) await approval."
    failed = [a.name for a in agents if a.status == "failed"]
    if failed:
        text += f" Failed: {', '.join(failed)} (see agents)."
    for missing in coverage.not_run:
        text += f" Partial: {missing}."
    if state.suppressed:
        text += (
            f" {state.suppressed} finding(s) left out by the team's learnings "
            "(the report lists which applied)."
        )
    if stopped:
        text += " Stopped on request before every agent ran."
    reuse = _reuse(state, earlier_calls)
    if reuse.any:
        units = reuse.units_reused + reuse.units_sent
        text += (
            f" Unchanged since an earlier run, so not sent again: {reuse.units_reused} of "
            f"{units} unit(s) of context, and {reuse.calls} whole call(s), answered from "
            "the model's earlier answers."
        )
    for note in state.notes:
        text += f" {note}"
    return text
