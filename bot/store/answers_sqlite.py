"""The kept answers in a SQLite file, through the standard library alone.

The same table and the same rules as `AnswerCache` (bounded by size and age, the first answer
for a key stays, an entry read after a day counts as used again), for the command line on the
data folder's store: `chatops analyze` run again at the same commit (a CI job) is then about
starting Python and reading one row, not importing the database layer (half a second). The bot
uses `AnswerCache` on the same file; the two write the same timestamps, and a test has each read
what the other kept.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bot.store.revision import HEAD

if TYPE_CHECKING:
    from bot.settings import Settings

# As SQLAlchemy writes a DateTime on SQLite: naive UTC, microseconds, sortable as text.
_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
REFRESH_AFTER = timedelta(days=1)  # an entry read after this counts as used again
_BATCH = 500  # keys per IN list (SQLite allows 32,766 variables; a round number well below)
_BUSY_TIMEOUT_S = 30


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).replace(tzinfo=None).strftime(_FORMAT)


def _now() -> datetime:
    return datetime.now(UTC)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def bounds(settings: Settings) -> dict[str, float]:
    """The kept answers' bounds, as the settings say (both stores take them)."""
    return {
        "max_bytes": int(settings.chatops_answer_cache_mb * 1_000_000),
        "max_age_days": settings.chatops_answer_cache_days,
    }


def current(path: Path) -> bool:
    """Whether the file holds the newest schema (then no migration needs to run)."""
    if not path.is_file():
        return False
    try:
        with closing_connection(path) as connection:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return False
    return row is not None and row[0] == HEAD


@contextmanager
def closing_connection(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        connection.execute("PRAGMA synchronous=NORMAL")
        yield connection
    finally:
        connection.close()


class SqliteAnswers:
    """The `AnswerStore` port on a SQLite file whose schema is current (`current`)."""

    def __init__(self, path: Path, *, max_bytes: float, max_age_days: float) -> None:
        self.path = path
        self.max_bytes = int(max_bytes)
        self.max_age = timedelta(days=max_age_days)

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A transaction holding the write lock from its start, as the bot's store takes it."""
        with closing_connection(self.path) as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

    def get(self, key: str) -> str | None:
        return self.get_many([key]).get(key)

    def put(self, key: str, kind: str, value: str) -> None:
        self.put_many([(key, kind, value)])

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        stale: list[str] = []
        now = _now()
        with closing_connection(self.path) as connection:
            for first in range(0, len(keys), _BATCH):
                batch = list(keys[first : first + _BATCH])
                marks = ",".join("?" * len(batch))
                rows = connection.execute(
                    f"SELECT key, value, used_at FROM answers WHERE key IN ({marks})",  # noqa: S608 - only placeholders
                    batch,
                )
                for key, value, used_at in rows:
                    found[key] = value
                    if now - _parse(used_at) > REFRESH_AFTER:
                        stale.append(key)
        if stale:
            with self._writing() as connection:
                connection.executemany(
                    "UPDATE answers SET used_at = ? WHERE key = ?",
                    [(_stamp(now), key) for key in stale],
                )
        return found

    def put_many(self, items: Sequence[tuple[str, str, str]]) -> None:
        if not items:
            return
        stamp = _stamp(_now())
        with self._writing() as connection:
            # The write lock is held: no other process adds a key meanwhile, and a key kept
            # before (or twice in `items`) keeps its first answer.
            connection.executemany(
                "INSERT OR IGNORE INTO answers (key, kind, value, size, created_at, used_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (key, kind, value, len(value.encode("utf-8")), stamp, stamp)
                    for key, kind, value in items
                ],
            )

    def prune(self) -> int:
        """Drop what is past the bounds (the oldest by age, then the least recently used
        until the size fits); returns how many entries went."""
        with self._writing() as connection:
            cutoff = _stamp(_now() - self.max_age)
            gone = connection.execute("DELETE FROM answers WHERE used_at < ?", (cutoff,)).rowcount
            (total,) = connection.execute("SELECT COALESCE(SUM(size), 0) FROM answers").fetchone()
            excess = int(total) - self.max_bytes
            keys: list[str] = []
            if excess > 0:
                freed = 0
                for key, size in connection.execute(
                    "SELECT key, size FROM answers ORDER BY used_at, key"
                ):
                    if freed >= excess:
                        break
                    keys.append(key)
                    freed += int(size)
                connection.executemany("DELETE FROM answers WHERE key = ?", [(k,) for k in keys])
        return int(gone) + len(keys)

    def stats(self) -> tuple[int, int]:
        """Entries and bytes kept."""
        with closing_connection(self.path) as connection:
            count, size = connection.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM answers"
            ).fetchone()
        return int(count), int(size)
