"""What a team's feedback taught the agents, as the pipeline applies it.

`bot/` curates votes into these; `agents/` only applies them, the same way offline and online:

- a **rule** ("do not flag B101 in tests/") drops the analyzers' and the model's findings it
  matches, and its text goes into the agent's prompt;
- a **suppressed fingerprint** (a finding the team rejected repeatedly) is dropped;
- an **example** (an accepted or a corrected output) goes into the prompt's examples.

Every learning has an id; the report lists the ids that applied, so a person can see why a
finding is gone and `forget` the learning that did it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from agents.report import Finding, Severity


@dataclass(frozen=True)
class Learning:
    id: str
    agent: str
    text: str
    # A rule the code applies: findings of this category (or rule id) under this path pattern
    # are not reported. None: the learning is prompt text only.
    category: str | None = None
    path_glob: str | None = None

    def matches(self, finding: Finding) -> bool:
        # A broad rule never hides a critical finding; only that finding's own suppression can.
        if self.category is None or finding.agent != self.agent:
            return False
        if finding.severity is Severity.critical:
            return False
        if self.category not in (finding.category, finding.rule):
            return False
        if self.path_glob is None:
            return True
        return finding.file is not None and fnmatch.fnmatchcase(finding.file, self.path_glob)


@dataclass(frozen=True)
class Example:
    id: str
    agent: str
    text: str


@dataclass(frozen=True)
class Suppression:
    id: str
    agent: str
    fingerprint: str


@dataclass
class Learnings:
    """Everything learned for one repository."""

    learnings: list[Learning] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    suppressions: list[Suppression] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.learnings or self.examples or self.suppressions)

    def texts_for(self, agent: str) -> list[tuple[str, str]]:
        """(id, text) of the learnings that go into `agent`'s prompt."""
        return [(item.id, item.text) for item in self.learnings if item.agent == agent]

    def examples_for(self, agent: str) -> list[tuple[str, str]]:
        return [(item.id, item.text) for item in self.examples if item.agent == agent]

    def filter(self, findings: list[Finding]) -> tuple[list[Finding], dict[str, int]]:
        """The findings no learning rules out, and how many each learning id dropped."""
        by_fingerprint = {s.fingerprint: s for s in self.suppressions}
        rules = [item for item in self.learnings if item.category is not None]
        kept: list[Finding] = []
        dropped: dict[str, int] = {}
        for finding in findings:
            suppression = by_fingerprint.get(finding.fingerprint)
            rule = next((r for r in rules if r.matches(finding)), None)
            reason = suppression.id if suppression else rule.id if rule else None
            if reason is None:
                kept.append(finding)
            else:
                dropped[reason] = dropped.get(reason, 0) + 1
        return kept, dropped
