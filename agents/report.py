"""The report contract: what every analysis returns and every surface renders.

`chatops analyze ... --format json` prints a `Report`, and other tools consume it, so the field
names here are a public interface: add fields, never rename or remove one.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Severity(StrEnum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"
    info = "info"

    @property
    def rank(self) -> int:
        """Higher is worse: info 0 ... critical 4."""
        return _SEVERITY_RANK[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_SEVERITY_RANK = {
    Severity.info: 0,
    Severity.low: 1,
    Severity.medium: 2,
    Severity.high: 3,
    Severity.critical: 4,
}


class Source(StrEnum):
    llm = "llm"
    ruff = "ruff"
    bandit = "bandit"
    secrets = "secrets"
    heuristic = "heuristic"
    dependencies = "dependencies"


class RiskLevel(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeenIn(_Model):
    """A run and the branch head it analyzed."""

    run_id: str
    head_sha: str


class Votes(_Model):
    up: int = 0
    down: int = 0


class Finding(_Model):
    fingerprint: str = Field(description="Stable id: survives unrelated lines moving above it.")
    agent: str
    category: str
    rule: str = Field(default="", description="The analyzer's rule id, e.g. F821 or B602.")
    severity: Severity
    confidence: float = Field(ge=0.0, le=1.0)
    file: str | None = None
    start_line: int | None = Field(default=None, ge=1)
    end_line: int | None = Field(default=None, ge=1)
    title: str
    detail: str = ""
    suggestion: str = ""
    source: Source
    seen_by: list[str] = Field(
        default_factory=list,
        description="Every analyzer and rule that reported this same problem, when several did.",
    )
    status: Literal["new", "open"] | None = Field(
        default=None,
        description="Against the previous run of the same branch: `new`, or `open` (reported "
        "then too). None when there was no previous run to compare with.",
    )
    first_seen: SeenIn | None = Field(
        default=None, description="For an `open` finding: the run and head that first reported it."
    )
    votes: Votes | None = Field(
        default=None,
        description="The team's votes on this same finding in any run (each person's latest "
        "counts once); None when nobody voted.",
    )
    flag: str | None = Field(
        default=None,
        description="The feature flag's key a finding is about (the feature_flags agent), so "
        "votes and learnings can name it; None for every other finding.",
    )


class ProposalKind(StrEnum):
    patch = "patch"
    new_file = "new_file"
    jira_comment = "jira_comment"
    # A patch on a branch the apply creates (`target`) from `base_sha`: never an existing one.
    branch_patch = "branch_patch"
    # A review of the pull request analyzed (`target` pr/N): its comments, posted on approval.
    pr_review = "pr_review"


class Proposal(_Model):
    id: str = Field(description="Short id within the report: P1, P2, ...")
    kind: ProposalKind
    agent: str
    title: str
    target: str = Field(
        description="Where it would be written: the branch for a patch, the path for a new file, "
        "the ticket key for a Jira comment."
    )
    base_sha: str = Field(description="The commit the content was made against.")
    content: str = Field(description="The exact change: a unified diff, a file, or comment text.")
    content_sha256: str


class TargetKind(StrEnum):
    branch = "branch"


class Target(_Model):
    kind: TargetKind = TargetKind.branch
    repo: str = Field(description="The repository's path or configured name.")
    branch: str
    base: str
    head_sha: str
    base_sha: str = Field(description="The merge-base the diff is taken from.")
    pull_request: int | None = Field(
        default=None, description="The pull request analyzed (its number on the code host)."
    )
    url: str | None = Field(default=None, description="The pull request's page.")


class Risk(_Model):
    level: RiskLevel
    score: int = Field(ge=0, le=100)
    reasons: list[str] = Field(default_factory=list)


class SkippedFile(_Model):
    file: str
    reason: str


class Coverage(_Model):
    files_analyzed: list[str] = Field(default_factory=list)
    files_skipped: list[SkippedFile] = Field(default_factory=list)
    not_run: list[str] = Field(
        default_factory=list,
        description="Parts that were asked for and did not run, with why: "
        "'bandit did not run: ...'. A report with any is partial.",
    )


class Usage(_Model):
    model: str | None = Field(default=None, description="None when no model was called.")
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0


class Reuse(_Model):
    """What the model was not asked again: answers kept from earlier runs of the same content."""

    calls: int = Field(default=0, description="Model calls answered from kept answers.")
    units_reused: int = Field(
        default=0,
        description="Units of context (a file's hunks, a definition) whose kept "
        "answer was used instead of sending them.",
    )
    units_sent: int = Field(default=0, description="Units of context sent to the model.")
    report_of: str | None = Field(
        default=None,
        description="The earlier run whose whole report this is: the same head, base, code, "
        "settings and learnings, so nothing was analyzed again.",
    )

    @property
    def any(self) -> bool:
        return bool(self.calls or self.units_reused or self.report_of)


class LLMCall(_Model):
    """One model call, as recorded: who asked, with which prompt, what it cost, how it ended."""

    agent: str
    model: str
    prompt_version: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: int = 0
    outcome: str = Field(
        description="ok, or why not: max_tokens, invalid_output, auth, rate_limited, "
        "overloaded, timeout, connection, bad_request, ..."
    )


Judgment = Literal["met", "not_met", "needs_human", "unjudged"]


class CriterionJudgment(_Model):
    criterion: str
    judgment: Judgment
    evidence: list[str] = Field(default_factory=list, description="file:line references")
    reason: str = ""


class Compliance(_Model):
    """How the change meets the ticket's acceptance criteria. The verdict is computed in code
    from the judgments, never taken from a model."""

    ticket: str
    verdict: Literal["fully", "partially", "not_compliant", "unjudged"]
    criteria: list[CriterionJudgment] = Field(default_factory=list)
    note: str = ""


class TicketInfo(_Model):
    key: str
    summary: str
    status: str = ""
    type: str = ""
    criteria_source: str = ""
    truncated: list[str] = Field(default_factory=list)


AgentState = Literal["done", "failed", "skipped", "cancelled"]


class AgentRun(_Model):
    name: str
    status: AgentState
    duration_ms: int = Field(ge=0)
    error: str | None = None


class Report(_Model):
    run_id: str
    target: Target
    summary: str
    risk: Risk
    findings: list[Finding] = Field(default_factory=list)
    proposals: list[Proposal] = Field(default_factory=list)
    coverage: Coverage = Field(default_factory=Coverage)
    usage: Usage = Field(default_factory=Usage)
    reuse: Reuse = Field(default_factory=Reuse)
    agents: list[AgentRun] = Field(default_factory=list)
    stopped_early: bool = Field(
        default=False, description="True when a stop request ended the run."
    )
    llm_calls: list[LLMCall] = Field(default_factory=list)
    prompt_versions: dict[str, str] = Field(
        default_factory=dict, description="Agent name to the hash of its system prompt's prefix."
    )
    dropped_unsupported: int = Field(
        default=0, description="Model findings the validation pass found unsupported by the diff."
    )
    ticket: TicketInfo | None = None
    compliance: Compliance | None = None
    learnings_applied: list[str] = Field(
        default_factory=list,
        description="Ids of the team's learnings that applied: in a prompt, or ruling out a "
        "finding (`/agent learnings` lists them).",
    )
    suppressed_findings: int = Field(
        default=0, description="Findings left out because a learning ruled them out."
    )
    previous: SeenIn | None = Field(
        default=None,
        description="The earlier run of the same branch this report is compared with, if any.",
    )
    resolved: list[Finding] = Field(
        default_factory=list,
        description="Findings of the previous run that are gone now (fixed, or their code "
        "removed). Only those the same check looked at again: a part that did not run, or a "
        "file not analyzed this time, resolves nothing.",
    )
    complete: bool = Field(
        default=True,
        description="False when an agent did not finish (stopped, failed, cancelled): the "
        "report then gives no verdict, whatever `risk` computed from the part that ran.",
    )

    def verdict(self) -> str:
        """What every surface shows as the verdict: the risk, or that there is none."""
        if not self.complete:
            return "incomplete: no verdict"
        return f"{self.risk.level.value.upper()} {self.risk.score}/100"

    def agents_line(self) -> str:
        """Which agents ran and which did not, for an incomplete report."""
        ran = [a.name for a in self.agents if a.status == "done"]
        not_ran = [f"{a.name} ({a.status})" for a in self.agents if a.status != "done"]
        return f"ran: {', '.join(ran) or 'none'}; did not run: {', '.join(not_ran) or 'none'}"

    def findings_at_least(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity.at_least(severity)]


def report_json_schema() -> dict[str, Any]:
    """The published JSON Schema of the report (`chatops schema`)."""
    schema = Report.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "chatops report"
    return schema


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def number_repeats(findings: list[Finding]) -> list[Finding]:
    """Give identical lines flagged at several places their own fingerprints.

    Two `eval(x)` lines in one file share tool, rule, file and text; the second (in line order)
    gets `#2` mixed into its fingerprint, so de-duplication keeps both, and each keeps its identity
    while unrelated lines above them move.
    """
    ordered = sorted(findings, key=lambda f: (f.start_line or 0, f.end_line or 0))
    seen: dict[str, int] = {}
    renamed: dict[int, Finding] = {}
    for finding in ordered:
        count = seen.get(finding.fingerprint, 0) + 1
        seen[finding.fingerprint] = count
        if count > 1:
            new = hashlib.sha256(f"{finding.fingerprint}#{count}".encode()).hexdigest()[:16]
            renamed[id(finding)] = finding.model_copy(update={"fingerprint": new})
    return [renamed.get(id(f), f) for f in findings]


_WHITESPACE = re.compile(r"\s+")


def fingerprint(*, source: Source, rule: str, file: str | None, anchor: str) -> str:
    """A finding's stable identity.

    Built from what the finding is about (tool, rule, file, and the text of the flagged line with
    whitespace folded), never from its line number, so the same problem keeps the same
    fingerprint when unrelated lines above it are added or removed.
    """
    normalized = _WHITESPACE.sub(" ", anchor).strip()
    key = json.dumps([source.value, rule, file or "", normalized])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
