"""What every agent is: a name and a step over the shared pipeline state."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from agents.context.git import DiffContext
from agents.context.workspace import Workspace
from agents.learnings import Learnings
from agents.llm import LLMSession
from agents.report import Compliance, Finding, Proposal
from agents.reuse import PROCESS_ANSWERS, AnswerStore


@dataclass
class PipelineState:
    diff: DiffContext
    workspace: Workspace
    # The model, when a key is configured; None runs every agent on the analyzers alone.
    llm: LLMSession | None = None
    guidance: str = ""
    learnings: Learnings = field(default_factory=Learnings)
    # Ids of the learnings that applied: in a prompt sent, or a finding they ruled out.
    learnings_applied: set[str] = field(default_factory=set)
    suppressed: int = 0
    findings: list[Finding] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)
    # Said in the report's summary: what an agent chose not to do, and why.
    notes: list[str] = field(default_factory=list)
    # Files the analyzers read but the model did not, with the reason (coverage is disclosed).
    model_skipped: dict[str, str] = field(default_factory=dict)
    prompt_versions: dict[str, str] = field(default_factory=dict)
    dropped_unsupported: int = 0
    model_summary: str = ""
    compliance: Compliance | None = None
    # Parts asked for that failed ("bandit did not run: ..."): the report is partial.
    not_run: list[str] = field(default_factory=list)
    # Values the analyzers took for secrets: masked in every finding, never in a proposal.
    secret_values: set[str] = field(default_factory=set)
    # Where analyzers' (and model) answers are kept by content between runs.
    kept: AnswerStore = field(default_factory=lambda: PROCESS_ANSWERS)
    # Units of model context answered from earlier runs' answers, and units sent.
    units_reused: int = 0
    units_sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def next_proposal_id(self) -> str:
        return f"P{len(self.proposals) + 1}"

    def note(self, text: str) -> None:
        with self._lock:
            if text not in self.notes:
                self.notes.append(text)

    def did_not_run(self, part: str, reason: str) -> None:
        """An analyzer (or the model) that was asked for failed: the others' findings stay,
        and the report says what is missing."""
        with self._lock:
            self.not_run.append(f"{part} did not run: {reason}"[:500])

    def count_units(self, *, reused: int, sent: int) -> None:
        with self._lock:
            self.units_reused += reused
            self.units_sent += sent

    def skip_for_model(self, path: str, reason: str) -> None:
        with self._lock:
            self.model_skipped.setdefault(path, reason)


class Agent(Protocol):
    name: str
    description: str

    def run(self, state: PipelineState) -> None: ...
