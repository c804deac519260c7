"""Read-only aggregates over the ledger: what the digest, `feedback stats`, the budget guard and
App Home show. Every query is bounded by an indexed time range (runs.created_at, findings.
created_at, feedback.at, llm_calls.at), so a digest over a day reads that day's rows only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, case, func, literal
from sqlmodel import col, select

from bot.store.db import session_scope
from bot.store.models import AuditEvent, FeedbackRow, FindingRow, LLMCallRow, ProposalRow, Run


@dataclass(frozen=True)
class Acceptance:
    up: int
    down: int

    @property
    def rate(self) -> float | None:
        """up / (up + down); None with no votes."""
        total = self.up + self.down
        return self.up / total if total else None

    def __add__(self, other: Acceptance) -> Acceptance:
        return Acceptance(self.up + other.up, self.down + other.down)


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cost_usd: float
    calls: int


@dataclass(frozen=True)
class SlowRun:
    run_id: str
    repo: str
    target: str
    duration_ms: int


_UP = func.sum(case((col(FeedbackRow.vote) > 0, 1), else_=0))
_DOWN = func.sum(case((col(FeedbackRow.vote) < 0, 1), else_=0))


class Stats:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def runs_by_status(self, start: datetime, end: datetime) -> dict[str, int]:
        with session_scope(self.engine) as session:
            rows = session.exec(
                select(Run.status, func.count())
                .where(col(Run.created_at) >= start, col(Run.created_at) < end)
                .group_by(Run.status)
            )
            return {status: int(n) for status, n in rows}

    def runs_count(self, start: datetime, end: datetime) -> int:
        with session_scope(self.engine) as session:
            value = session.exec(
                select(func.count()).where(col(Run.created_at) >= start, col(Run.created_at) < end)
            ).one()
            return int(value)

    def findings_by(self, start: datetime, end: datetime) -> dict[tuple[str, str], int]:
        """(agent, severity) → findings reported in the period."""
        with session_scope(self.engine) as session:
            rows = session.exec(
                select(FindingRow.agent, FindingRow.severity, func.count())
                .where(col(FindingRow.created_at) >= start, col(FindingRow.created_at) < end)
                .group_by(FindingRow.agent, FindingRow.severity)
            )
            return {(agent, severity): int(n) for agent, severity, n in rows}

    def acceptance(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        by_version: bool = False,
        repo: str | None = None,
    ) -> dict[tuple[str, str], Acceptance]:
        """(agent, prompt version or "") → votes. A report-level vote's agent is "report"."""
        version = FeedbackRow.prompt_version if by_version else literal("")
        with session_scope(self.engine) as session:
            query = select(FeedbackRow.agent, version, _UP, _DOWN).group_by(FeedbackRow.agent)
            if by_version:
                query = query.group_by(FeedbackRow.prompt_version)
            if start is not None:
                query = query.where(col(FeedbackRow.at) >= start)
            if end is not None:
                query = query.where(col(FeedbackRow.at) < end)
            if repo is not None:
                query = query.where(FeedbackRow.repo == repo)
            return {
                (agent, ver or ""): Acceptance(int(up or 0), int(down or 0))
                for agent, ver, up, down in session.exec(query)
            }

    def rejected_categories(
        self, start: datetime, end: datetime, limit: int = 5
    ) -> list[tuple[str, str, int]]:
        """The failure modes: (agent, category or rule) most often voted down."""
        with session_scope(self.engine) as session:
            count = func.count()
            rows = session.exec(
                select(FeedbackRow.agent, FeedbackRow.category, FeedbackRow.rule, count)
                .where(
                    col(FeedbackRow.at) >= start,
                    col(FeedbackRow.at) < end,
                    col(FeedbackRow.vote) < 0,
                    col(FeedbackRow.fingerprint) != "",
                )
                .group_by(FeedbackRow.agent, FeedbackRow.category, FeedbackRow.rule)
                .order_by(count.desc(), FeedbackRow.agent, FeedbackRow.category)
                .limit(limit)
            )
            return [
                (agent, f"{category} {rule}".strip() if rule else category, int(n))
                for agent, category, rule, n in rows
            ]

    def proposals_by_status(
        self, start: datetime, end: datetime, ttl_s: int, now: datetime
    ) -> dict[str, int]:
        """applied, rejected, expired (including still-proposed ones past their lifetime),
        pending, and any other outcome (stale, failed) under its own name."""
        expired_before = now - timedelta(seconds=ttl_s)
        state = case(
            (
                (col(ProposalRow.status) == "proposed")
                & (col(ProposalRow.created_at) < expired_before),
                "expired",
            ),
            (col(ProposalRow.status) == "proposed", "pending"),
            else_=col(ProposalRow.status),
        )
        with session_scope(self.engine) as session:
            rows = session.exec(
                select(state, func.count())
                .where(col(ProposalRow.created_at) >= start, col(ProposalRow.created_at) < end)
                .group_by(state)
            )
            return {str(status): int(n) for status, n in rows}

    def usage(self, start: datetime, end: datetime) -> Usage:
        with session_scope(self.engine) as session:
            tokens_in, tokens_out, cost, calls = session.exec(
                select(
                    func.coalesce(func.sum(LLMCallRow.input_tokens), 0),
                    func.coalesce(func.sum(LLMCallRow.output_tokens), 0),
                    func.coalesce(func.sum(LLMCallRow.cost_usd), 0.0),
                    func.count(),
                ).where(col(LLMCallRow.at) >= start, col(LLMCallRow.at) < end)
            ).one()
            return Usage(int(tokens_in), int(tokens_out), float(cost), int(calls))

    def spent_usd(self, since: datetime) -> float:
        """Spent from `since` on (a day's start: nothing is recorded in the future)."""
        return self.usage(since, since + timedelta(days=2)).cost_usd

    def refused_for_budget(self, start: datetime, end: datetime) -> int:
        with session_scope(self.engine) as session:
            value = session.exec(
                select(func.count()).where(
                    col(AuditEvent.action) == "budget_refused",
                    col(AuditEvent.at) >= start,
                    col(AuditEvent.at) < end,
                )
            ).one()
            return int(value)

    def slowest(self, start: datetime, end: datetime, limit: int = 3) -> list[SlowRun]:
        with session_scope(self.engine) as session:
            rows = session.exec(
                select(Run.id, Run.repo, Run.target, Run.duration_ms)
                .where(
                    col(Run.created_at) >= start,
                    col(Run.created_at) < end,
                    col(Run.duration_ms).is_not(None),
                )
                .order_by(col(Run.duration_ms).desc())
                .limit(limit)
            )
            return [SlowRun(i, repo, target, int(ms or 0)) for i, repo, target, ms in rows]

    def flag_findings(
        self, start: datetime, end: datetime, limit: int = 500
    ) -> list[tuple[str, str]]:
        """(repository, title) of the feature-flag agent's findings in the period, newest
        first, at most `limit` (the digest's flags section)."""
        with session_scope(self.engine) as session:
            rows = session.exec(
                select(FindingRow.repo, FindingRow.title)
                .where(
                    col(FindingRow.created_at) >= start,
                    col(FindingRow.created_at) < end,
                    FindingRow.agent == "feature_flags",
                )
                .order_by(col(FindingRow.created_at).desc())
                .limit(limit)
            )
            return [(repo, title) for repo, title in rows]

    def retired_flags(self, start: datetime, end: datetime, limit: int = 50) -> list[str]:
        """Titles of the flag retirements applied among the period's proposals."""
        with session_scope(self.engine) as session:
            rows = session.exec(
                select(ProposalRow.title)
                .where(
                    col(ProposalRow.created_at) >= start,
                    col(ProposalRow.created_at) < end,
                    ProposalRow.agent == "feature_flags",
                    ProposalRow.kind == "branch_patch",
                    ProposalRow.status == "applied",
                )
                .order_by(col(ProposalRow.created_at).desc())
                .limit(limit)
            )
            return list(rows)
