"""The interaction log (votes) and the learnings curated from it.

A vote is an upsert on (run, item, user): one vote per user per item, the latest wins. A
learning is an upsert on (repo, key), so curating twice changes nothing, and a forgotten learning
keeps its row so curation never brings it back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from agents.learnings import Example, Learning, Learnings, Suppression
from bot.store.db import session_scope
from bot.store.models import FeedbackRow, LearningRow, PromptVersionRow
from bot.store.types import utcnow


@dataclass(frozen=True)
class Vote:
    """A vote and what it was on, as the interaction log keeps it."""

    run_id: str
    fingerprint: str  # "" for the whole report
    user: str
    vote: int  # +1 or -1
    repo: str
    agent: str
    category: str = ""
    rule: str = ""
    file: str | None = None
    source: str = ""
    model: str = ""
    prompt_version: str = ""
    output: str = ""
    via: str = "button"
    reason: str | None = None
    correction: str | None = None


@dataclass(frozen=True)
class LearningSpec:
    """What curation wants to exist; `key` identifies it across passes."""

    repo: str
    agent: str
    kind: str  # rule, note, example, suppress
    key: str
    text: str
    votes: int
    category: str | None = None
    path_glob: str | None = None
    fingerprint: str | None = None


class FeedbackStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- votes ---------------------------------------------------------------------------------

    def record(self, vote: Vote) -> FeedbackRow:
        """Insert or replace this user's vote on this item. A reason is kept when a later vote
        in the same direction carries none (a reaction after the modal, say)."""
        for _ in range(3):  # two first votes at once: one inserts, the other then updates
            try:
                with session_scope(self.engine) as session:
                    row = session.exec(
                        select(FeedbackRow).where(
                            FeedbackRow.run_id == vote.run_id,
                            FeedbackRow.fingerprint == vote.fingerprint,
                            FeedbackRow.user == vote.user,
                        )
                    ).first()
                    keep_reason = row is not None and row.vote == vote.vote
                    if row is None:
                        row = FeedbackRow(
                            run_id=vote.run_id, fingerprint=vote.fingerprint, user=vote.user, vote=0
                        )
                    row.vote = vote.vote
                    row.at = utcnow()
                    row.repo, row.agent, row.category, row.rule = (
                        vote.repo,
                        vote.agent,
                        vote.category,
                        vote.rule,
                    )
                    row.file, row.source, row.model = vote.file, vote.source, vote.model
                    row.prompt_version, row.output, row.via = (
                        vote.prompt_version,
                        vote.output,
                        vote.via,
                    )
                    if vote.reason is not None or not keep_reason:
                        row.reason = vote.reason
                    if vote.correction is not None or not keep_reason:
                        row.correction = vote.correction
                    session.add(row)
                    session.flush()
                    return row
            except IntegrityError:
                continue
        raise RuntimeError("could not record the vote")  # pragma: no cover

    def explain(
        self, run_id: str, fingerprint: str, user: str, reason: str, correction: str | None
    ) -> bool:
        """Attach what was wrong (and the right output) to this user's down-vote."""
        with session_scope(self.engine) as session:
            result = session.execute(
                update(FeedbackRow)
                .where(
                    col(FeedbackRow.run_id) == run_id,
                    col(FeedbackRow.fingerprint) == fingerprint,
                    col(FeedbackRow.user) == user,
                    col(FeedbackRow.vote) == -1,
                )
                .values(reason=reason, correction=correction, at=utcnow())
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def withdraw(self, run_id: str, fingerprint: str, user: str, vote: int) -> bool:
        """Remove the vote if it is still `vote` (a removed reaction; a later button click in
        the other direction stays)."""
        with session_scope(self.engine) as session:
            result = session.execute(
                delete(FeedbackRow).where(
                    col(FeedbackRow.run_id) == run_id,
                    col(FeedbackRow.fingerprint) == fingerprint,
                    col(FeedbackRow.user) == user,
                    col(FeedbackRow.vote) == vote,
                )
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def tally(self, repo: str, fingerprints: list[str]) -> dict[str, tuple[int, int]]:
        """(👍, 👎) on each finding in any run of `repo`: each person's latest vote on it
        counts once, so a finding keeps its votes across runs while its code is unchanged."""
        latest: dict[tuple[str, str], tuple[datetime, int]] = {}
        for first in range(0, len(fingerprints), 500):
            batch = fingerprints[first : first + 500]
            with session_scope(self.engine) as session:
                rows = session.exec(
                    select(
                        FeedbackRow.fingerprint, FeedbackRow.user, FeedbackRow.at, FeedbackRow.vote
                    ).where(FeedbackRow.repo == repo, col(FeedbackRow.fingerprint).in_(batch))
                ).all()
            for fingerprint, user, at, vote in rows:
                seen = latest.get((fingerprint, user))
                if seen is None or at > seen[0]:
                    latest[(fingerprint, user)] = (at, vote)
        counts: dict[str, tuple[int, int]] = {}
        for (fingerprint, _), (_, vote) in latest.items():
            up, down = counts.get(fingerprint, (0, 0))
            counts[fingerprint] = (up + (vote > 0), down + (vote < 0))
        return counts

    def votes(self, *, repo: str | None = None, since: datetime | None = None) -> list[FeedbackRow]:
        with session_scope(self.engine) as session:
            query = select(FeedbackRow).order_by(col(FeedbackRow.at))
            if repo is not None:
                query = query.where(FeedbackRow.repo == repo)
            if since is not None:
                query = query.where(col(FeedbackRow.at) >= since)
            return list(session.exec(query))

    def export_rows(self, since: datetime | None = None) -> Iterator[dict[str, object]]:
        """The log with each vote's prompt (the system prompt of its version), oldest first."""
        with session_scope(self.engine) as session:
            prompts = {
                (row.version, row.agent): row.text or ""
                for row in session.exec(select(PromptVersionRow))
            }
        for row in self.votes(since=since):
            yield {
                "at": row.at.isoformat(),
                "run_id": row.run_id,
                "repo": row.repo,
                "user": row.user,
                "via": row.via,
                "vote": row.vote,
                "item": row.fingerprint or "report",
                "agent": row.agent,
                "source": row.source,
                "category": row.category,
                "rule": row.rule,
                "file": row.file or "",
                "model": row.model,
                "prompt_version": row.prompt_version,
                "prompt": prompts.get((row.prompt_version, row.agent), ""),
                "output": row.output,
                "reason": row.reason or "",
                "correction": row.correction or "",
            }

    # -- learnings -----------------------------------------------------------------------------

    def learnings(self, repo: str | None = None, *, forgotten: bool = False) -> list[LearningRow]:
        with session_scope(self.engine) as session:
            query = select(LearningRow).order_by(col(LearningRow.repo), col(LearningRow.created_at))
            if repo is not None:
                query = query.where(LearningRow.repo == repo)
            if not forgotten:
                query = query.where(col(LearningRow.forgotten_at).is_(None))
            return list(session.exec(query))

    def learning(self, learning_id: str) -> LearningRow | None:
        with session_scope(self.engine) as session:
            return session.get(LearningRow, learning_id)

    def save_learnings(self, specs: list[LearningSpec]) -> tuple[list[str], list[str]]:
        """Make the curated set exist: new keys are inserted, changed texts updated, learnings
        no longer supported by the votes retired. Forgotten keys stay forgotten. Returns the ids
        added and retired."""
        added: list[str] = []
        retired: list[str] = []
        wanted = {(s.repo, s.key): s for s in specs}
        with session_scope(self.engine) as session:
            existing = {(r.repo, r.key): r for r in session.exec(select(LearningRow))}
            generation = max((r.prompt_generation for r in existing.values()), default=0) + 1
            for key, spec in wanted.items():
                row = existing.get(key)
                if row is None:
                    row = LearningRow(
                        id=f"L{uuid.uuid4().hex[:6]}",
                        repo=spec.repo,
                        agent=spec.agent,
                        kind=spec.kind,
                        key=spec.key,
                        text=spec.text,
                        category=spec.category,
                        path_glob=spec.path_glob,
                        fingerprint=spec.fingerprint,
                        votes=spec.votes,
                        prompt_generation=generation,
                    )
                    session.add(row)
                    added.append(row.id)
                elif row.forgotten_at is None and (row.text, row.votes) != (spec.text, spec.votes):
                    row.text, row.votes = spec.text, spec.votes
                    session.add(row)
            for key, row in existing.items():
                if key not in wanted and row.forgotten_at is None:
                    # The votes no longer support it (withdrawn, or outvoted): retire it as
                    # curation itself, so a later pass may make it again.
                    session.delete(row)
                    retired.append(row.id)
        return added, retired

    def forget(self, learning_id: str, user: str) -> LearningRow | None:
        with session_scope(self.engine) as session:
            row = session.get(LearningRow, learning_id)
            if row is None or row.forgotten_at is not None:
                return None
            row.forgotten_by, row.forgotten_at = user, utcnow()
            session.add(row)
            return row

    def for_repo(self, repo: str) -> Learnings:
        """The active learnings as the pipeline applies them."""
        result = Learnings()
        for row in self.learnings(repo):
            if row.kind == "suppress" and row.fingerprint:
                result.suppressions.append(Suppression(row.id, row.agent, row.fingerprint))
            elif row.kind == "example":
                result.examples.append(Example(row.id, row.agent, row.text))
            elif row.kind in ("rule", "note"):
                result.learnings.append(
                    Learning(row.id, row.agent, row.text, row.category, row.path_glob)
                )
        return result

    # -- prompts -------------------------------------------------------------------------------

    def save_prompts(self, texts: dict[tuple[str, str], str]) -> None:
        """Keep each (version, agent)'s prompt text once, for the interaction log."""
        if not texts:
            return
        with session_scope(self.engine) as session:
            for (version, agent), text in texts.items():
                row = session.get(PromptVersionRow, (version, agent))
                if row is None:
                    session.add(PromptVersionRow(version=version, agent=agent, text=text))
                elif row.text is None:
                    row.text = text
                    session.add(row)
