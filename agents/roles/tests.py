"""Tests: new public code that no test mentions."""

from __future__ import annotations

from agents.analyzers.untested import run_untested
from agents.roles.base import PipelineState


class TestsAgent:
    __test__ = False  # not a pytest test class, despite the name
    name = "tests"
    description = "new public functions and classes with no test"

    def run(self, state: PipelineState) -> None:
        state.findings.extend(run_untested(state.diff, state.workspace, agent=self.name))
