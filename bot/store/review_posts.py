"""What the bot posted on pull requests (its summary review, its inline comments), by the code
host's ids: the record that lets a re-run edit them in place instead of posting again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.store.db import session_scope
from bot.store.models import ReviewPostRow
from bot.store.types import utcnow

SUMMARY = "review"
# A claim on the pull request while one apply posts or edits there: two reviews approved at
# the same moment would otherwise both find no summary and both post one.
LOCK = "lock"


def finding_key(fingerprint: str) -> str:
    return f"F:{fingerprint}"


@dataclass(frozen=True)
class PullRef:
    host: str
    project: str
    number: int


class ReviewPostStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def posts(self, pull: PullRef) -> dict[str, ReviewPostRow]:
        """Everything posted on the pull request, by key ("review", "F:<fingerprint>")."""
        # (the claim, `LOCK`, is not a post)
        with session_scope(self.engine) as session:
            query = select(ReviewPostRow).where(
                ReviewPostRow.host == pull.host,
                ReviewPostRow.project == pull.project,
                ReviewPostRow.number == pull.number,
                ReviewPostRow.key != LOCK,
            )
            return {row.key: row for row in session.exec(query)}

    def keep(
        self,
        pull: PullRef,
        key: str,
        host_id: int,
        run_id: str,
        status: str = "open",
        *,
        _again: bool = False,
    ) -> None:
        """Record a post (or its new state): one row per key, the latest write wins."""
        now = utcnow()
        values = {"host_id": host_id, "status": status, "run_id": run_id, "updated_at": now}
        with session_scope(self.engine) as session:
            moved = session.execute(
                update(ReviewPostRow)
                .where(
                    col(ReviewPostRow.host) == pull.host,
                    col(ReviewPostRow.project) == pull.project,
                    col(ReviewPostRow.number) == pull.number,
                    col(ReviewPostRow.key) == key,
                )
                .values(**values)
            )
            if moved.rowcount == 1:  # type: ignore[attr-defined]
                return
        try:
            with session_scope(self.engine) as session:
                session.add(
                    ReviewPostRow(
                        host=pull.host,
                        project=pull.project,
                        number=pull.number,
                        key=key,
                        host_id=host_id,
                        status=status,
                        run_id=run_id,
                        updated_at=now,
                    )
                )
        except IntegrityError:  # another apply recorded it a moment ago: record ours over it
            if _again:
                raise
            self.keep(pull, key, host_id, run_id, status, _again=True)

    def claim(self, pull: PullRef, owner: str, stale_after_s: float) -> bool:
        """Hold the pull request for `owner` (RUN/P1): True if it is ours now. A claim older
        than `stale_after_s` (its worker died) is taken over."""
        now = utcnow()
        where = (
            col(ReviewPostRow.host) == pull.host,
            col(ReviewPostRow.project) == pull.project,
            col(ReviewPostRow.number) == pull.number,
            col(ReviewPostRow.key) == LOCK,
        )
        with session_scope(self.engine) as session:
            taken = session.execute(
                update(ReviewPostRow)
                .where(
                    *where, col(ReviewPostRow.updated_at) < now - timedelta(seconds=stale_after_s)
                )
                .values(run_id=owner, updated_at=now)
            )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return True
        try:
            with session_scope(self.engine) as session:
                session.add(
                    ReviewPostRow(
                        host=pull.host,
                        project=pull.project,
                        number=pull.number,
                        key=LOCK,
                        host_id=0,
                        status="held",
                        run_id=owner,
                        updated_at=now,
                    )
                )
            return True
        except IntegrityError:
            return False

    def release(self, pull: PullRef, owner: str) -> None:
        with session_scope(self.engine) as session:
            session.execute(
                delete(ReviewPostRow).where(
                    col(ReviewPostRow.host) == pull.host,
                    col(ReviewPostRow.project) == pull.project,
                    col(ReviewPostRow.number) == pull.number,
                    col(ReviewPostRow.key) == LOCK,
                    col(ReviewPostRow.run_id) == owner,
                )
            )
