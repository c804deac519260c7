"""Who posts a period's digest: the first to insert the (channel, period) row. A claim whose
poster died before marking it posted can be taken over once it is stale."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.store.db import session_scope
from bot.store.models import DigestRow
from bot.store.types import utcnow


class DigestStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, channel: str, period_key: str, worker: str, stale_after_s: float) -> bool:
        """True for exactly one caller per channel and period (until a claim goes stale)."""
        try:
            with session_scope(self.engine) as session:
                session.add(DigestRow(channel=channel, period_key=period_key, worker=worker))
            return True
        except IntegrityError:
            pass
        now = utcnow()
        with session_scope(self.engine) as session:
            result = session.execute(
                update(DigestRow)
                .where(
                    col(DigestRow.channel) == channel,
                    col(DigestRow.period_key) == period_key,
                    col(DigestRow.status) == "claimed",
                    col(DigestRow.claimed_at) < now - timedelta(seconds=stale_after_s),
                )
                .values(worker=worker, claimed_at=now)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def mark_posted(self, channel: str, period_key: str, worker: str, ts: str) -> None:
        with session_scope(self.engine) as session:
            session.execute(
                update(DigestRow)
                .where(
                    col(DigestRow.channel) == channel,
                    col(DigestRow.period_key) == period_key,
                    col(DigestRow.worker) == worker,
                )
                .values(status="posted", posted_at=utcnow(), ts=ts)
            )

    def release(self, channel: str, period_key: str, worker: str) -> None:
        """Posting failed: let the next tick try again."""
        with session_scope(self.engine) as session:
            session.execute(
                delete(DigestRow).where(
                    col(DigestRow.channel) == channel,
                    col(DigestRow.period_key) == period_key,
                    col(DigestRow.worker) == worker,
                    col(DigestRow.status) == "claimed",
                )
            )

    def rows(self, channel: str | None = None) -> list[DigestRow]:
        with session_scope(self.engine) as session:
            query = select(DigestRow).order_by(col(DigestRow.claimed_at))
            if channel is not None:
                query = query.where(DigestRow.channel == channel)
            return list(session.exec(query))
