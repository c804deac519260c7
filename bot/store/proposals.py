"""Proposals, approvals and the audit trail.

A proposal's life: proposed → approved → applying → applied, or rejected, expired, stale, failed.
Every transition is one conditional UPDATE from the expected state, so whatever is clicked,
retried or raced, a proposal is decided once and executed at most once. Audit rows are only ever
inserted."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.store.db import session_scope
from bot.store.models import ApprovalRow, AuditEvent, ProcessedEvent, ProposalRow, Run
from bot.store.types import utcnow


class ProposalStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def find(self, run_id: str, pid: str) -> ProposalRow | None:
        with session_scope(self.engine) as session:
            query = select(ProposalRow).where(ProposalRow.run_id == run_id, ProposalRow.pid == pid)
            return session.exec(query).first()

    def get(self, proposal_id: int) -> ProposalRow | None:
        with session_scope(self.engine) as session:
            return session.get(ProposalRow, proposal_id)

    def for_run(self, run_id: str) -> list[ProposalRow]:
        with session_scope(self.engine) as session:
            query = select(ProposalRow).where(ProposalRow.run_id == run_id)
            return list(session.exec(query.order_by(col(ProposalRow.id))))

    def open_since(self, since: datetime, limit: int = 50) -> list[tuple[ProposalRow, Run]]:
        """Proposals still waiting for a decision, created after `since`, newest first."""
        with session_scope(self.engine) as session:
            query = (
                select(ProposalRow, Run)
                .join(Run, col(Run.id) == col(ProposalRow.run_id))
                .where(col(ProposalRow.status) == "proposed", col(ProposalRow.created_at) >= since)
                .order_by(col(ProposalRow.created_at).desc())
                .limit(limit)
            )
            return [(proposal, run) for proposal, run in session.exec(query)]

    def transition(self, proposal_id: int, expected: str, new: str, **values: object) -> bool:
        """Move from `expected` to `new` in one conditional update; False if it was not in
        `expected` any more (someone else decided, or it already ran)."""
        with session_scope(self.engine) as session:
            result = session.execute(
                update(ProposalRow)
                .where(col(ProposalRow.id) == proposal_id, col(ProposalRow.status) == expected)
                .values(status=new, **values)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def decide(
        self,
        proposal_id: int,
        decision: str,
        user: str,
        reason: str | None,
        *,
        event_key: str | None = None,
        audit_detail: str | None = None,
        via: str | None = None,
    ) -> bool | None:
        """proposed → approved/rejected, with the approval row, the `granted` audit row (when
        `audit_detail` is given) and the delivery's key, atomically. False if it was no longer
        proposed; None if the key was already used."""
        status = "approved" if decision == "approve" else "rejected"
        try:
            with session_scope(self.engine) as session:
                if event_key is not None:
                    session.add(ProcessedEvent(key=event_key))
                    session.flush()
                result = session.execute(
                    update(ProposalRow)
                    .where(
                        col(ProposalRow.id) == proposal_id, col(ProposalRow.status) == "proposed"
                    )
                    .values(status=status, decided_by=user, decided_at=utcnow(), via=via)
                )
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    session.rollback()
                    return False
                session.add(
                    ApprovalRow(proposal_id=proposal_id, user=user, decision=status, reason=reason)
                )
                if audit_detail is not None:
                    row = session.get(ProposalRow, proposal_id)
                    session.add(
                        AuditEvent(
                            actor=user,
                            action=f"{decision}_proposal",
                            outcome="granted",
                            detail=audit_detail,
                            run_id=row.run_id if row is not None else None,
                            proposal_id=proposal_id,
                        )
                    )
        except IntegrityError:
            return None
        return True

    def seen(self, event_key: str) -> bool:
        """Has a delivery with this key been acted on (decided, or denied)?"""
        with session_scope(self.engine) as session:
            return session.get(ProcessedEvent, event_key) is not None

    def approved_waiting(self, older_than_s: float) -> list[int]:
        """Approved proposals whose apply job has not started after `older_than_s`: their task
        was lost (a queue restart); enqueuing again is safe, the job runs at most once."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with session_scope(self.engine) as session:
            query = select(ProposalRow.id).where(
                col(ProposalRow.status) == "approved", col(ProposalRow.decided_at) < cutoff
            )
            return [int(pid) for pid in session.exec(query) if pid is not None]

    def abandoned(self, older_than_s: float) -> list[ProposalRow]:
        """Proposals left `applying` for longer than `older_than_s`: their worker died mid-write.
        `Approvals.reconcile_abandoned` decides, from the branch, whether the write landed."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with session_scope(self.engine) as session:
            # Since the apply started, not since the click: an apply may wait in the queue.
            started = func.coalesce(col(ProposalRow.apply_started_at), col(ProposalRow.decided_at))
            query = select(ProposalRow).where(
                col(ProposalRow.status) == "applying", started < cutoff
            )
            return list(session.exec(query.order_by(col(ProposalRow.id))))

    def record_intent(self, proposal_id: int, commit: str) -> None:
        """Before the branch moves: the commit this apply is about to put on it. Raises if the
        proposal is no longer `applying` (another worker reconciled it), so nothing moves."""
        if not self.transition(proposal_id, "applying", "applying", intended_commit=commit):
            raise RuntimeError(f"proposal {proposal_id} is no longer being applied here")

    def approval(self, proposal_id: int) -> ApprovalRow | None:
        with session_scope(self.engine) as session:
            query = select(ApprovalRow).where(ApprovalRow.proposal_id == proposal_id)
            return session.exec(query.order_by(col(ApprovalRow.id).desc())).first()

    def audit(
        self,
        *,
        actor: str,
        action: str,
        outcome: str,
        detail: str,
        run_id: str | None = None,
        proposal_id: int | None = None,
        event_key: str | None = None,
    ) -> None:
        """An audit row; with `event_key`, the delivery it answers is marked handled in the
        same transaction (a second, racing handling of it leaves no second row)."""
        try:
            with session_scope(self.engine) as session:
                if event_key is not None:
                    session.add(ProcessedEvent(key=event_key))
                    session.flush()
                session.add(
                    AuditEvent(
                        actor=actor,
                        action=action,
                        outcome=outcome,
                        detail=detail,
                        run_id=run_id,
                        proposal_id=proposal_id,
                    )
                )
        except IntegrityError:
            if event_key is None:
                raise

    def audit_rows(
        self, run_id: str | None = None, since: datetime | None = None
    ) -> list[AuditEvent]:
        with session_scope(self.engine) as session:
            query = select(AuditEvent).order_by(col(AuditEvent.id))
            if run_id is not None:
                query = query.where(AuditEvent.run_id == run_id)
            if since is not None:
                query = query.where(col(AuditEvent.at) >= since)
            return list(session.exec(query))
