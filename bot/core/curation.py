"""Curation: the interaction log in, the learnings that should exist out. Pure and
deterministic (no model call), so it runs offline, on a schedule, and twice with the same result.

Per repository and agent:
- **suppress** a finding whose down-votes outnumber its up-votes by `suppress_after`;
- a **rule** "do not flag RULE in DIR/" once `rule_after` different findings of that rule were
  rejected under one top-level folder (and none there was accepted);
- a **note** from each down-vote's reason (the team's own words, for the prompt);
- **examples**: accepted model outputs, and rejected ones with the team's correction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from bot.config import FeedbackConfig
from bot.store.feedback import LearningSpec
from bot.store.models import FeedbackRow


@dataclass
class _Item:
    """One finding (by fingerprint) in one repository, across every run that reported it."""

    rows: list[FeedbackRow]

    @property
    def last(self) -> FeedbackRow:
        return self.rows[-1]

    @property
    def net_down(self) -> int:
        return sum(-row.vote for row in self.rows)


def curate(votes: Iterable[FeedbackRow], config: FeedbackConfig) -> list[LearningSpec]:
    # One voice per person per finding: a finding that comes back in later runs can be voted
    # on again, but only each person's latest vote counts, so nobody suppresses one alone.
    latest: dict[tuple[str, str, str], FeedbackRow] = {}
    for row in sorted(votes, key=lambda r: r.at):
        if row.fingerprint and row.agent != "report":
            latest[(row.repo, row.fingerprint, row.user)] = row
    items: dict[tuple[str, str], _Item] = {}
    for row in sorted(latest.values(), key=lambda r: r.at):
        items.setdefault((row.repo, row.fingerprint), _Item([])).rows.append(row)
    specs: list[LearningSpec] = []
    specs += _suppressions(items, config)
    specs += _rules(items, config)
    specs += _notes(items, config)
    specs += _examples(items, config)
    return specs


def _what(row: FeedbackRow) -> str:
    kind = f"{row.rule} ({row.category})" if row.rule else row.category
    return kind or "this kind of finding"


def _suppressions(
    items: dict[tuple[str, str], _Item], config: FeedbackConfig
) -> list[LearningSpec]:
    specs = []
    for (repo, fingerprint), item in sorted(items.items()):
        if item.net_down < config.suppress_after:
            continue
        last = item.last
        reasons = [row.reason for row in item.rows if row.vote < 0 and row.reason]
        why = f": {reasons[-1]}" if reasons else ""
        where = f" at {last.file}" if last.file else ""
        specs.append(
            LearningSpec(
                repo=repo,
                agent=last.agent,
                kind="suppress",
                key=f"suppress:{fingerprint}",
                text=f"Not reporting {_what(last)}{where}: rejected {item.net_down} times"
                + why[:300],
                votes=item.net_down,
                fingerprint=fingerprint,
            )
        )
    return specs


def _top_folder(path: str | None) -> str | None:
    if not path or "/" not in path:
        return None
    return path.split("/", 1)[0]


def _rules(items: dict[tuple[str, str], _Item], config: FeedbackConfig) -> list[LearningSpec]:
    rejected: dict[tuple[str, str, str, str], set[str]] = defaultdict(set)
    accepted: set[tuple[str, str, str, str]] = set()
    for (repo, fingerprint), item in items.items():
        last = item.last
        folder = _top_folder(last.file)
        kind = last.rule or last.category
        if folder is None or not kind:
            continue
        key = (repo, last.agent, kind, folder)
        if item.net_down > 0:
            rejected[key].add(fingerprint)
        elif item.net_down < 0:
            accepted.add(key)
    specs = []
    for (repo, agent, kind, folder), fingerprints in sorted(rejected.items()):
        if len(fingerprints) < config.rule_after or (repo, agent, kind, folder) in accepted:
            continue
        specs.append(
            LearningSpec(
                repo=repo,
                agent=agent,
                kind="rule",
                key=f"rule:{agent}:{kind}:{folder}",
                text=f"Do not flag {kind} in {folder}/: the team rejected it on "
                f"{len(fingerprints)} different findings there.",
                votes=len(fingerprints),
                category=kind,
                path_glob=f"{folder}/*",
            )
        )
    return specs


def _notes(items: dict[tuple[str, str], _Item], config: FeedbackConfig) -> list[LearningSpec]:
    per_agent: dict[tuple[str, str], list[LearningSpec]] = defaultdict(list)
    at: dict[str, datetime] = {}
    for (repo, fingerprint), item in items.items():
        for row in item.rows:
            if row.vote >= 0 or not row.reason:
                continue
            at[f"note:{fingerprint}:{row.user}"] = row.at
            where = f" in {row.file}" if row.file else ""
            per_agent[(repo, row.agent)].append(
                LearningSpec(
                    repo=repo,
                    agent=row.agent,
                    kind="note",
                    key=f"note:{fingerprint}:{row.user}",
                    text=f"On {_what(row)}{where}, a reviewer said the finding was wrong: "
                    f"{row.reason[:400]}",
                    votes=1,
                )
            )
    specs = []
    for notes in per_agent.values():  # the newest reasons, within the cap
        notes.sort(key=lambda spec: at[spec.key])
        specs += notes[-config.notes_per_agent :] if config.notes_per_agent else []
    return sorted(specs, key=lambda s: s.key)


def _examples(items: dict[tuple[str, str], _Item], config: FeedbackConfig) -> list[LearningSpec]:
    per_agent: dict[tuple[str, str], list[LearningSpec]] = defaultdict(list)
    for (repo, fingerprint), item in sorted(items.items(), key=lambda kv: kv[1].last.at):
        last = item.last
        if last.source != "llm" or not last.output:
            continue
        corrections = [r.correction for r in item.rows if r.vote < 0 and r.correction]
        if item.net_down < 0:
            text = f"Output the team accepted:\n{last.output}"
        elif item.net_down > 0 and corrections:
            text = (
                f"Output the team rejected:\n{last.output}\n"
                f"What the team said the right output was:\n{corrections[-1][:1000]}"
            )
        else:
            continue
        per_agent[(repo, last.agent)].append(
            LearningSpec(
                repo=repo,
                agent=last.agent,
                kind="example",
                key=f"example:{fingerprint}",
                text=text,
                votes=abs(item.net_down),
            )
        )
    specs = []
    for examples in per_agent.values():
        specs += examples[-config.examples_per_agent :] if config.examples_per_agent else []
    return sorted(specs, key=lambda s: s.key)
