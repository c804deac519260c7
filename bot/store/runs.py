"""Queries on runs and their results. Every state change of a run is one conditional UPDATE, so
two workers, a reaper and a stop request can race without losing or doubling anything."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from agents.report import LLMCall, Report
from bot.store.db import session_scope
from bot.store.models import (
    FINAL,
    FindingRow,
    LLMCallRow,
    ProcessedEvent,
    PromptVersionRow,
    ProposalRow,
    Run,
    RunStatus,
    StoredReport,
)

__all__ = ["ACTIVE", "FINAL", "NewRun", "RunStore"]
from bot.store.types import utcnow

ACTIVE = (RunStatus.queued, RunStatus.running)


@dataclass(frozen=True)
class NewRun:
    requester: str
    surface: str
    repo: str
    target: str
    base: str | None = None
    kind: str = "branch"
    ticket: str | None = None
    place: str | None = None  # where the run reports (its surface's terms)
    message: str | None = None
    step: bool = False  # a human checkpoint after each agent


class RunStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- creating ------------------------------------------------------------------------------

    def create(self, new: NewRun, *, event_key: str | None = None) -> tuple[Run, bool]:
        """Insert a queued run. With `event_key`, a second request with the same key returns the
        first run and False (a retried delivery starts nothing)."""
        run = Run(
            id=uuid.uuid4().hex[:12],
            requester=new.requester,
            surface=new.surface,
            repo=new.repo,
            kind=new.kind,
            ticket=new.ticket,
            target=new.target,
            base=new.base,
            place=new.place,
            message=new.message,
            step=new.step,
        )
        try:
            with session_scope(self.engine) as session:
                if event_key is not None:
                    session.add(ProcessedEvent(key=event_key, run_id=run.id))
                    session.flush()
                session.add(run)
        except IntegrityError:
            existing = self.run_for_event(event_key or "")
            if existing is None:
                raise
            return existing, False
        return run, True

    def run_for_event(self, key: str) -> Run | None:
        with session_scope(self.engine) as session:
            event = session.get(ProcessedEvent, key)
            return session.get(Run, event.run_id) if event and event.run_id else None

    # -- reading -------------------------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        with session_scope(self.engine) as session:
            return session.get(Run, run_id)

    def recent(self, limit: int = 10, requester: str | None = None) -> list[Run]:
        with session_scope(self.engine) as session:
            query = select(Run).order_by(col(Run.created_at).desc()).limit(limit)
            if requester is not None:
                query = query.where(Run.requester == requester)
            return list(session.exec(query))

    def report(self, run_id: str) -> Report | None:
        with session_scope(self.engine) as session:
            row = session.get(StoredReport, run_id)
            return Report.model_validate_json(row.body) if row else None

    def previous_report(self, run: Run) -> Report | None:
        """The report of the latest earlier run of the same branch (same repository, kind,
        branch and base) that has one: what a re-run is compared with."""
        with session_scope(self.engine) as session:
            query = (
                select(StoredReport.body)
                .join(Run, col(Run.id) == col(StoredReport.run_id))
                .where(
                    Run.repo == run.repo,
                    Run.kind == run.kind,
                    Run.target == run.target,
                    col(Run.base).is_(None) if run.base is None else Run.base == run.base,
                    Run.id != run.id,
                    col(Run.created_at) < run.created_at,
                )
                .order_by(col(StoredReport.created_at).desc())
                .limit(1)
            )
            body = session.exec(query).first()
        return Report.model_validate_json(body) if body else None

    def reports_count(self, run_id: str) -> int:
        with session_scope(self.engine) as session:
            rows = session.exec(select(StoredReport).where(StoredReport.run_id == run_id))
            return len(list(rows))

    # -- the job's life ------------------------------------------------------------------------

    def claim(self, run_id: str, worker: str, lease_s: float) -> Run | None:
        """Take a queued run, or one whose lease expired, for `worker`. None if someone else
        holds it or it is finished."""
        now = utcnow()
        with session_scope(self.engine) as session:
            result = session.execute(
                update(Run)
                .where(
                    col(Run.id) == run_id,
                    # A stepped run stopped at its checkpoint is claimed to write its report.
                    or_(col(Run.stop_requested).is_(False), col(Run.checkpoint).is_not(None)),
                    or_(
                        col(Run.status) == "queued",
                        and_(col(Run.status) == "running", col(Run.lease_until) < now),
                    ),
                )
                .values(
                    status="running",
                    worker=worker,
                    lease_until=now + timedelta(seconds=lease_s),
                    attempts=col(Run.attempts) + 1,
                    started_at=now,
                )
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return None
            return session.get(Run, run_id)

    def heartbeat(
        self, run_id: str, worker: str, lease_s: float, progress: str | None = None
    ) -> bool:
        """Extend the lease while `worker` still holds it; False means the run was taken away
        (its lease expired and the reaper gave it to someone else) or a stop was requested."""
        values: dict[str, object] = {"lease_until": utcnow() + timedelta(seconds=lease_s)}
        if progress is not None:
            values["progress"] = progress
        with session_scope(self.engine) as session:
            result = session.execute(
                update(Run)
                .where(
                    col(Run.id) == run_id, col(Run.worker) == worker, col(Run.status) == "running"
                )
                .values(**values)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return False
            run = session.get(Run, run_id)
            return run is not None and not run.stop_requested

    def record_call(self, run_id: str, call: LLMCall) -> None:
        """A model call as it ends: today's spend counts it at once, whatever the run does."""
        with session_scope(self.engine) as session:
            session.add(LLMCallRow(run_id=run_id, **call.model_dump()))

    def finish(
        self, run_id: str, worker: str, report: Report, *, calls_recorded: bool = False
    ) -> bool:
        """Store the report and mark the run done, in one transaction, only if `worker` still
        holds the run. A worker that lost its lease stores nothing."""
        now = utcnow()
        status = "cancelled" if report.stopped_early else "done"
        with session_scope(self.engine) as session:
            result = session.execute(
                update(Run)
                .where(
                    col(Run.id) == run_id, col(Run.worker) == worker, col(Run.status) == "running"
                )
                .values(status=status, finished_at=now, lease_until=None)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                return False
            run = session.get(Run, run_id)
            assert run is not None
            if run.started_at is not None:
                run.duration_ms = int((now - run.started_at).total_seconds() * 1000)
                session.add(run)
            session.add(
                StoredReport(
                    run_id=run_id,
                    # An incomplete report has no verdict: it is never counted as low risk.
                    risk_level=report.risk.level.value if report.complete else "incomplete",
                    risk_score=report.risk.score,
                    cost_usd=report.usage.cost_usd,
                    body=report.model_dump_json(),
                )
            )
            for finding in report.findings:
                session.add(
                    FindingRow(
                        run_id=run_id,
                        repo=run.repo,
                        fingerprint=finding.fingerprint,
                        agent=finding.agent,
                        source=finding.source.value,
                        category=finding.category,
                        severity=finding.severity.value,
                        file=finding.file,
                        start_line=finding.start_line,
                        title=finding.title,
                    )
                )
            for proposal in report.proposals:
                session.add(
                    ProposalRow(
                        run_id=run_id,
                        pid=proposal.id,
                        kind=proposal.kind.value,
                        agent=proposal.agent,
                        title=proposal.title,
                        target=proposal.target,
                        base_sha=proposal.base_sha,
                        content=proposal.content,
                        content_sha256=proposal.content_sha256,
                    )
                )
            if not calls_recorded:  # else record_call kept each as it ended
                for call in report.llm_calls:
                    session.add(LLMCallRow(run_id=run_id, **call.model_dump()))
            for agent, version in report.prompt_versions.items():
                if session.get(PromptVersionRow, (version, agent)) is None:
                    session.add(PromptVersionRow(version=version, agent=agent))
        return True

    def fail(self, run_id: str, worker: str | None, error: str) -> bool:
        """Mark a run failed with a reason a person can read (held by `worker`, or queued)."""
        with session_scope(self.engine) as session:
            owned = col(Run.worker) == worker if worker else col(Run.status) == "queued"
            result = session.execute(
                update(Run)
                .where(col(Run.id) == run_id, col(Run.status).in_(ACTIVE), owned)
                .values(status="failed", error=error[:2000], finished_at=utcnow(), lease_until=None)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def hand_back(self, run_id: str, worker: str) -> bool:
        """A worker shutting down gives a run it holds back to the queue: queued again, its
        attempt not counted (it did not fail). Its late `finish` then stores nothing."""
        with session_scope(self.engine) as session:
            # A run someone asked to stop ends here, cancelled: it would never be claimed again.
            # A stepped run (with a checkpoint) is claimed once more, to write its report.
            session.execute(
                update(Run)
                .where(
                    col(Run.id) == run_id,
                    col(Run.worker) == worker,
                    col(Run.status) == "running",
                    col(Run.stop_requested).is_(True),
                    col(Run.checkpoint).is_(None),
                )
                .values(status="cancelled", finished_at=utcnow(), lease_until=None)
            )
            result = session.execute(
                update(Run)
                .where(
                    col(Run.id) == run_id, col(Run.worker) == worker, col(Run.status) == "running"
                )
                .values(
                    status="queued",
                    worker=None,
                    lease_until=None,
                    attempts=col(Run.attempts) - 1,
                    enqueued_at=utcnow(),
                )
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def stuck(self, requeue_after_s: float) -> list[Run]:
        """Running past their lease (the worker died), or queued longer than a task should wait
        (the task was lost): what the reaper will pick up, as `chatops status` shows it."""
        now = utcnow()
        with session_scope(self.engine) as session:
            query = select(Run).where(
                or_(
                    and_(col(Run.status) == "running", col(Run.lease_until) < now),
                    and_(
                        col(Run.status) == "queued",
                        col(Run.enqueued_at) < now - timedelta(seconds=requeue_after_s),
                    ),
                )
            )
            return list(session.exec(query.order_by(col(Run.created_at))))

    def count_by_status(self) -> dict[str, int]:
        with session_scope(self.engine) as session:
            rows = session.exec(select(Run.status, func.count()).group_by(Run.status))
            return {status: int(n) for status, n in rows}

    def request_stop(self, run_id: str, by: str | None = None) -> Run | None:
        """A queued run is cancelled at once; a running one stops at its next checkpoint. `by`
        is who asked (the thread says so when the run stops); None when nobody did. A stepped
        run waiting at (or queued after) a human checkpoint is queued to write the report of
        what it found so far: the caller enqueues it."""
        with session_scope(self.engine) as session:
            session.execute(
                update(Run)
                .where(
                    col(Run.id) == run_id,
                    col(Run.status).in_(("waiting", "queued")),
                    col(Run.checkpoint).is_not(None),
                )
                .values(
                    status="queued",
                    stop_requested=True,
                    stop_requested_by=by,
                    wait_until=None,
                    enqueued_at=utcnow(),
                )
            )
            session.execute(
                update(Run)
                .where(
                    col(Run.id) == run_id,
                    col(Run.status) == "queued",
                    col(Run.checkpoint).is_(None),
                )
                .values(
                    status="cancelled",
                    stop_requested=True,
                    stop_requested_by=by,
                    finished_at=utcnow(),
                )
            )
            session.execute(
                update(Run)
                .where(col(Run.id) == run_id, col(Run.status) == "running")
                .values(stop_requested=True, stop_requested_by=by)
            )
            return session.get(Run, run_id)

    # -- human checkpoints ---------------------------------------------------------------------

    def pause(
        self,
        run_id: str,
        worker: str,
        checkpoint: str,
        wait_until: datetime,
        progress: str,
    ) -> bool:
        """`worker`'s stepped run waits at a checkpoint: no worker, no lease, its state kept in
        the row. False if it lost the run or a stop was asked meanwhile (it stops instead)."""
        with session_scope(self.engine) as session:
            result = session.execute(
                update(Run)
                .where(
                    col(Run.id) == run_id,
                    col(Run.worker) == worker,
                    col(Run.status) == "running",
                    col(Run.stop_requested).is_(False),
                )
                .values(
                    status="waiting",
                    worker=None,
                    lease_until=None,
                    checkpoint=checkpoint,
                    wait_until=wait_until,
                    progress=progress,
                )
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def resume(self, run_id: str) -> bool:
        """A waiting run goes on: queued for its next leg (the caller enqueues it), once,
        whoever clicks (its attempts start again: a leg is a job of its own)."""
        with session_scope(self.engine) as session:
            result = session.execute(
                update(Run)
                .where(col(Run.id) == run_id, col(Run.status) == "waiting")
                .values(status="queued", wait_until=None, enqueued_at=utcnow(), attempts=0)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def replace_checkpoint(self, run_id: str, old: str, new: str) -> bool:
        """Compare-and-swap of a waiting run's kept state (a finding dropped): False if the
        run moved on or someone else changed it first."""
        with session_scope(self.engine) as session:
            result = session.execute(
                update(Run)
                .where(
                    col(Run.id) == run_id,
                    col(Run.status) == "waiting",
                    col(Run.checkpoint) == old,
                )
                .values(checkpoint=new)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def expire_waits(self) -> list[str]:
        """Waiting runs past their deadline, queued to stop there (by nobody: the deadline),
        each by one conditional update, so one reaper of many takes each."""
        now = utcnow()
        with session_scope(self.engine) as session:
            due = list(
                session.exec(
                    select(Run.id).where(col(Run.status) == "waiting", col(Run.wait_until) < now)
                )
            )
        expired = []
        for run_id in due:
            with session_scope(self.engine) as session:
                result = session.execute(
                    update(Run)
                    .where(
                        col(Run.id) == run_id,
                        col(Run.status) == "waiting",
                        col(Run.wait_until) < now,
                    )
                    .values(
                        status="queued",
                        stop_requested=True,
                        stop_requested_by=None,
                        wait_until=None,
                        enqueued_at=now,
                    )
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    expired.append(run_id)
        return expired

    def reap(self, *, max_attempts: int, requeue_after_s: float) -> list[str]:
        """Runs to enqueue again: those whose worker's lease expired (the worker died), and
        queued ones whose task may have been lost. A run that has used up its attempts fails."""
        now = utcnow()
        with session_scope(self.engine) as session:
            session.execute(
                update(Run)
                .where(
                    col(Run.status) == "running",
                    col(Run.lease_until) < now,
                    col(Run.attempts) >= max_attempts,
                )
                .values(
                    status="failed",
                    finished_at=now,
                    lease_until=None,
                    error=f"The worker stopped {max_attempts} times while running this; "
                    "giving up. Check the workers' logs.",
                )
            )
            # A run asked to stop whose worker died: cancelled, since a claim would refuse it
            # (a stepped run is claimed once more, to write the report of what was let through).
            session.execute(
                update(Run)
                .where(
                    col(Run.status) == "running",
                    col(Run.lease_until) < now,
                    col(Run.stop_requested).is_(True),
                    col(Run.checkpoint).is_(None),
                )
                .values(status="cancelled", finished_at=now, lease_until=None)
            )
            expired = list(
                session.exec(
                    select(Run.id).where(col(Run.status) == "running", col(Run.lease_until) < now)
                )
            )
            stale_before: datetime = now - timedelta(seconds=requeue_after_s)
            stale = list(
                session.exec(
                    select(Run.id).where(
                        col(Run.status) == "queued", col(Run.enqueued_at) < stale_before
                    )
                )
            )
            if stale:
                session.execute(update(Run).where(col(Run.id).in_(stale)).values(enqueued_at=now))
        return expired + stale

    def set_message(self, run_id: str, place: str, message: str, thread: str | None = None) -> None:
        """Where the run's parent message is (progress edits it, the report goes with it), and
        the thread it is in, when not its own."""
        with session_scope(self.engine) as session:
            session.execute(
                update(Run)
                .where(col(Run.id) == run_id)
                .values(place=place, message=message, thread=thread)
            )

    def earlier_posted(self, run: Run, place: str) -> Run | None:
        """The latest earlier run of the same branch whose parent message is in `place`."""
        with session_scope(self.engine) as session:
            query = (
                select(Run)
                .where(
                    Run.repo == run.repo,
                    Run.kind == run.kind,
                    Run.target == run.target,
                    col(Run.base).is_(None) if run.base is None else Run.base == run.base,
                    Run.place == place,
                    col(Run.message).is_not(None),
                    Run.id != run.id,
                    col(Run.created_at) < run.created_at,
                )
                .order_by(col(Run.created_at).desc())
                .limit(1)
            )
            return session.exec(query).first()

    def set_report_message(self, run_id: str, message: str) -> None:
        """The report's own message: reactions on it are votes on the report."""
        with session_scope(self.engine) as session:
            session.execute(update(Run).where(col(Run.id) == run_id).values(report_message=message))

    def unposted(self, older_than_s: float) -> list[str]:
        """Finished runs with a place to report whose report was never posted (the worker died
        between storing and posting it, or the post failed), finished within the last hour."""
        now = utcnow()
        with session_scope(self.engine) as session:
            return list(
                session.exec(
                    select(Run.id).where(
                        col(Run.status).in_(("done", "cancelled")),
                        col(Run.place).is_not(None),
                        col(Run.report_message).is_(None),
                        col(Run.finished_at) < now - timedelta(seconds=older_than_s),
                        col(Run.finished_at) > now - timedelta(hours=1),
                    )
                )
            )

    def claim_report_post(self, run_id: str, marker: str) -> bool:
        """Only one poster of a run's report: the first to mark it (a worker, or a reaper
        redelivering it)."""
        with session_scope(self.engine) as session:
            result = session.execute(
                update(Run)
                .where(col(Run.id) == run_id, col(Run.report_message).is_(None))
                .values(report_message=marker)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def release_report_post(self, run_id: str, marker: str) -> None:
        """The post failed: let a later redelivery try."""
        with session_scope(self.engine) as session:
            session.execute(
                update(Run)
                .where(col(Run.id) == run_id, col(Run.report_message) == marker)
                .values(report_message=None)
            )

    def run_for_message(self, place: str, message: str) -> Run | None:
        """The run whose parent or report message this is."""
        with session_scope(self.engine) as session:
            query = select(Run).where(
                col(Run.place) == place,
                or_(col(Run.message) == message, col(Run.report_message) == message),
            )
            return session.exec(query).first()

    def unfinished_in_thread(self, place: str, thread: str) -> list[Run]:
        """The queued or running runs whose messages go in `thread` of `place` (its parent is
        in that thread, or is that thread's first message), oldest first."""
        with session_scope(self.engine) as session:
            query = (
                select(Run)
                .where(
                    col(Run.status).in_((*ACTIVE, RunStatus.waiting)),
                    col(Run.place) == place,
                    or_(
                        col(Run.thread) == thread,
                        and_(col(Run.thread).is_(None), col(Run.message) == thread),
                    ),
                )
                .order_by(col(Run.created_at))
            )
            return list(session.exec(query))

    def save_progress(self, run_id: str, progress: dict[str, object]) -> None:
        with session_scope(self.engine) as session:
            session.execute(
                update(Run).where(col(Run.id) == run_id).values(progress=json.dumps(progress))
            )
