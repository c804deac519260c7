"""Model answers kept for reuse, in the store every worker shares (`agents.reuse`'s port).

Reads do not write, except to refresh an entry's last use once a day at most, so a re-run that
reuses hundreds of answers costs reads. `prune()` keeps the table inside its bounds: entries not
used for `max_age_days`, then the least recently used until the total is under `max_bytes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Engine, delete, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot.store.answers_sqlite import REFRESH_AFTER, bounds
from bot.store.db import session_scope
from bot.store.models import AnswerRow
from bot.store.types import utcnow

if TYPE_CHECKING:
    from bot.settings import Settings

_DELETE_BATCH = 500


class AnswerCache:
    def __init__(self, engine: Engine, *, max_bytes: float, max_age_days: float) -> None:
        self.engine = engine
        self.max_bytes = int(max_bytes)
        self.max_age = timedelta(days=max_age_days)

    def get(self, key: str) -> str | None:
        # A plain read on a connection: hundreds of these make a re-run, an ORM session each
        # would cost more than the answers save.
        query = select(AnswerRow.value, AnswerRow.used_at).where(col(AnswerRow.key) == key)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        value, used_at = str(row[0]), row[1]
        if utcnow() - used_at > REFRESH_AFTER:
            with session_scope(self.engine) as session:
                session.execute(
                    update(AnswerRow).where(col(AnswerRow.key) == key).values(used_at=utcnow())
                )
        return value

    def put(self, key: str, kind: str, value: str) -> None:
        # A plain insert too: a first run keeps an answer per file and analyzer (1,500 on a
        # 500-file branch); an ORM session each took longer than the analysis they save.
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(AnswerRow).values(**_row(key, kind, value, utcnow())))
        except IntegrityError:  # two workers answered the same question: the first one stays
            return

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        stale: list[str] = []
        now = utcnow()
        with self.engine.connect() as connection:
            for first in range(0, len(keys), _DELETE_BATCH):
                batch = list(keys[first : first + _DELETE_BATCH])
                query = select(AnswerRow.key, AnswerRow.value, AnswerRow.used_at).where(
                    col(AnswerRow.key).in_(batch)
                )
                for key, value, used_at in connection.execute(query):
                    found[str(key)] = str(value)
                    if now - used_at > REFRESH_AFTER:
                        stale.append(str(key))
        if stale:
            with self.engine.begin() as connection:
                for first in range(0, len(stale), _DELETE_BATCH):
                    connection.execute(
                        update(AnswerRow)
                        .where(col(AnswerRow.key).in_(stale[first : first + _DELETE_BATCH]))
                        .values(used_at=now)
                    )
        return found

    def put_many(self, items: Sequence[tuple[str, str, str]]) -> None:
        """One transaction for all: the keys already kept (another worker's, or twice in
        `items`) are left out first, so one duplicate does not cost the others their place."""
        if not items:
            return
        rows: dict[str, dict[str, object]] = {}
        now = utcnow()
        for key, kind, value in items:
            rows.setdefault(key, _row(key, kind, value, now))
        try:
            with self.engine.begin() as connection:
                keys = list(rows)
                for first in range(0, len(keys), _DELETE_BATCH):
                    query = select(AnswerRow.key).where(
                        col(AnswerRow.key).in_(keys[first : first + _DELETE_BATCH])
                    )
                    for (key,) in connection.execute(query):
                        rows.pop(str(key), None)
                if rows:
                    connection.execute(insert(AnswerRow), list(rows.values()))
        except IntegrityError:  # another worker kept some meanwhile: keep the rest one by one
            for key, kind, value in items:
                self.put(key, kind, value)

    def prune(self) -> int:
        """Drop what is past the bounds; returns how many entries went."""
        with session_scope(self.engine) as session:
            expired = session.execute(
                delete(AnswerRow).where(col(AnswerRow.used_at) < utcnow() - self.max_age)
            )
            gone = int(expired.rowcount or 0)  # type: ignore[attr-defined]
            total = session.exec(select(func.coalesce(func.sum(AnswerRow.size), 0))).one()
            excess = int(total) - self.max_bytes
            keys: list[str] = []
            freed = 0
            if excess > 0:
                # The least recently used first, until enough bytes are freed.
                for key, size in session.exec(
                    select(AnswerRow.key, AnswerRow.size).order_by(
                        col(AnswerRow.used_at), col(AnswerRow.key)
                    )
                ):
                    if freed >= excess:
                        break
                    keys.append(key)
                    freed += size
            for first in range(0, len(keys), _DELETE_BATCH):
                batch = keys[first : first + _DELETE_BATCH]
                session.execute(delete(AnswerRow).where(col(AnswerRow.key).in_(batch)))
        return gone + len(keys)

    def stats(self) -> tuple[int, int]:
        """Entries and bytes kept."""
        with session_scope(self.engine) as session:
            count, size = session.exec(
                select(func.count(), func.coalesce(func.sum(AnswerRow.size), 0))
            ).one()
        return int(count), int(size)


def _row(key: str, kind: str, value: str, now: datetime) -> dict[str, object]:
    return {
        "key": key,
        "kind": kind,
        "value": value,
        "size": len(value.encode("utf-8")),
        "created_at": now,
        "used_at": now,
    }


def answer_cache(settings: Settings, engine: Engine) -> AnswerCache:
    """The kept answers, bounded as the settings say."""
    return AnswerCache(engine, **bounds(settings))
