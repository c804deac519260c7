"""What every agent is: a name and a step over the shared pipeline state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from agents.context.git import DiffContext
from agents.context.workspace import Workspace
from agents.report import Finding, Proposal


@dataclass
class PipelineState:
    diff: DiffContext
    workspace: Workspace
    findings: list[Finding] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)
    # Things an agent chose not to do, said in the report's summary (e.g. a patch that no longer
    # applies at the branch head).
    notes: list[str] = field(default_factory=list)

    def next_proposal_id(self) -> str:
        return f"P{len(self.proposals) + 1}"


class Agent(Protocol):
    name: str
    description: str

    def run(self, state: PipelineState) -> None: ...
