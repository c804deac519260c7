"""Followed branches: added and removed by people (or the policy), and their last seen head,
moved by compare-and-swap so that of several schedulers exactly one acts on a new head."""

from __future__ import annotations

from sqlalchemy import Engine, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.store.db import session_scope
from bot.store.models import FollowRow
from bot.store.types import utcnow


class FollowStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, row: FollowRow) -> tuple[FollowRow, bool]:
        """The follow, and False if the branch was followed in that place already."""
        try:
            with session_scope(self.engine) as session:
                session.add(row)
                session.flush()
                session.refresh(row)
                return row, True
        except IntegrityError:
            found = self.find(row.repo, row.branch, row.place)
            assert found is not None
            return found, False

    def find(self, repo: str, branch: str, place: str) -> FollowRow | None:
        with session_scope(self.engine) as session:
            return session.exec(
                select(FollowRow).where(
                    FollowRow.repo == repo, FollowRow.branch == branch, FollowRow.place == place
                )
            ).first()

    def remove(self, repo: str, branch: str, place: str) -> bool:
        with session_scope(self.engine) as session:
            result = session.execute(
                delete(FollowRow).where(
                    col(FollowRow.repo) == repo,
                    col(FollowRow.branch) == branch,
                    col(FollowRow.place) == place,
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def all(self) -> list[FollowRow]:
        with session_scope(self.engine) as session:
            return list(session.exec(select(FollowRow).order_by(col(FollowRow.id))))

    def in_place(self, place: str) -> list[FollowRow]:
        with session_scope(self.engine) as session:
            query = select(FollowRow).where(FollowRow.place == place).order_by(col(FollowRow.id))
            return list(session.exec(query))

    def move_head(self, follow_id: int, seen: str | None, head: str) -> bool:
        """Record `head` if the last head is still `seen`: True for the one caller that moved
        it (that caller starts the run)."""
        same = col(FollowRow.head).is_(None) if seen is None else col(FollowRow.head) == seen
        with session_scope(self.engine) as session:
            result = session.execute(
                update(FollowRow)
                .where(col(FollowRow.id) == follow_id, same)
                .values(head=head, checked_at=utcnow())
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]
