"""Which consumer processes are alive: each says so every few seconds (its reaper thread), and
says when it stops. `chatops status` and `/metrics` read it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.store.db import session_scope
from bot.store.models import WorkerRow
from bot.store.types import utcnow


class WorkerStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def beat(
        self, worker: str, *, host: str, pid: int, kind: str, scheduler: bool, state: str
    ) -> None:
        for _ in range(2):  # the first beat inserts; a race with nobody else is impossible,
            try:  # but a retried insert after a lost answer must not fail the reaper
                with session_scope(self.engine) as session:
                    row = session.get(WorkerRow, worker)
                    if row is None:
                        row = WorkerRow(id=worker, host=host, pid=pid, kind=kind)
                    row.scheduler, row.state, row.last_seen = scheduler, state, utcnow()
                    session.add(row)
                return
            except IntegrityError:
                continue

    def seen_since(self, since: datetime) -> list[WorkerRow]:
        with session_scope(self.engine) as session:
            query = (
                select(WorkerRow)
                .where(col(WorkerRow.last_seen) >= since)
                .order_by(col(WorkerRow.started_at))
            )
            return list(session.exec(query))
