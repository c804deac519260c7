"""Dependencies: what the branch changed in dependency manifests."""

from __future__ import annotations

from agents.analyzers.manifests import run_manifests
from agents.roles.base import PipelineState


class DependenciesAgent:
    name = "dependencies"
    description = "packages added, removed, upgraded, downgraded or unpinned"

    def run(self, state: PipelineState) -> None:
        state.findings.extend(run_manifests(state.diff, agent=self.name))
