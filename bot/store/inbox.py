"""The inbox: every surface delivery (a command, a click, an event) as a row, written before the
delivery is acknowledged. The row's key is the delivery's de-duplication key, so the insert that
records it is also the check that it is new: a retried delivery finds the row and is dropped.

The process that acknowledged a delivery holds it under a lease while it handles it. If that
process dies, the lease runs out and a reaper (in any consumer) claims the row and handles it
again; the use cases behind each delivery are idempotent by the same key, so what the dead
process did finish is not done twice. `attempts` is bounded: a delivery that keeps failing ends
`failed`, visibly in the log, not in a loop."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.store.db import session_scope
from bot.store.models import InboxRow
from bot.store.types import utcnow


class InboxStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(
        self, key: str, kind: str, payload: dict[str, Any], worker: str, lease_s: float
    ) -> bool:
        """Keep a delivery, held by `worker` for `lease_s`. False if it was recorded before."""
        row = InboxRow(
            key=key,
            kind=kind,
            payload=json.dumps(payload),
            worker=worker,
            lease_until=utcnow() + timedelta(seconds=lease_s),
            attempts=1,
        )
        try:
            with session_scope(self.engine) as session:
                session.add(row)
        except IntegrityError:
            return False
        return True

    def get(self, key: str) -> InboxRow | None:
        with session_scope(self.engine) as session:
            return session.get(InboxRow, key)

    def claim_abandoned(
        self, worker: str, lease_s: float, max_attempts: int, limit: int = 20
    ) -> list[InboxRow]:
        """Pending deliveries whose holder's lease ran out, now held by `worker`; those that
        used up their attempts are marked failed instead (and returned by `given_up`)."""
        now = utcnow()
        expired = or_(col(InboxRow.lease_until).is_(None), col(InboxRow.lease_until) < now)
        with session_scope(self.engine) as session:
            keys = list(
                session.exec(
                    select(InboxRow.key)
                    .where(col(InboxRow.status) == "pending", expired)
                    .order_by(col(InboxRow.received_at))
                    .limit(limit)
                )
            )
        claimed = []
        for key in keys:
            with session_scope(self.engine) as session:
                # One conditional update: of two reapers, one takes it.
                taken = session.execute(
                    update(InboxRow)
                    .where(
                        col(InboxRow.key) == key,
                        col(InboxRow.status) == "pending",
                        col(InboxRow.attempts) < max_attempts,
                        expired,
                    )
                    .values(
                        worker=worker,
                        lease_until=now + timedelta(seconds=lease_s),
                        attempts=InboxRow.attempts + 1,
                    )
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    row = session.get(InboxRow, key)
                    if row is not None:
                        claimed.append(row)
        return claimed

    def given_up(self, max_attempts: int) -> list[InboxRow]:
        """Pending deliveries out of attempts and lease: marked failed, returned once."""
        now = utcnow()
        expired = or_(col(InboxRow.lease_until).is_(None), col(InboxRow.lease_until) < now)
        with session_scope(self.engine) as session:
            rows = list(
                session.exec(
                    select(InboxRow).where(
                        col(InboxRow.status) == "pending",
                        col(InboxRow.attempts) >= max_attempts,
                        expired,
                    )
                )
            )
        failed = []
        for row in rows:
            if self._end(row.key, "pending", "failed", error="handled too many times; given up"):
                failed.append(row)
        return failed

    def done(self, key: str) -> None:
        self._end(key, "pending", "done")

    def fail(self, key: str, error: str) -> None:
        self._end(key, "pending", "failed", error=error[:2000])

    def _end(self, key: str, expected: str, status: str, error: str | None = None) -> bool:
        with session_scope(self.engine) as session:
            result = session.execute(
                update(InboxRow)
                .where(col(InboxRow.key) == key, col(InboxRow.status) == expected)
                .values(status=status, done_at=utcnow(), lease_until=None, error=error)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def prune(self, older_than_s: float) -> int:
        """Forget finished deliveries older than `older_than_s` (Slack retries within minutes;
        the key only has to outlive those)."""
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with session_scope(self.engine) as session:
            result = session.execute(
                delete(InboxRow).where(
                    col(InboxRow.status) != "pending", col(InboxRow.done_at) < cutoff
                )
            )
            return int(result.rowcount)  # type: ignore[attr-defined]
