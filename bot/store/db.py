"""The engine: SQLite in WAL mode with a busy timeout and `BEGIN IMMEDIATE` (writers queue
instead of failing), or PostgreSQL through psycopg 3. Alembic applies the schema."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine, event, inspect, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, SQLModel, create_engine

import bot.store.models  # noqa: F401  (registers the tables `upgrade` builds)
from bot.store.revision import HEAD

if TYPE_CHECKING:
    from alembic.config import Config

SQLITE_BUSY_TIMEOUT_S = 30
# About half a minute of retries: a database restart, not an outage.
RESTART_ATTEMPTS = 7

T = TypeVar("T")
log = logging.getLogger(__name__)


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def sqlite_url(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'chatops.db'}"


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        )
        _sqlite_pragmas(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event open transactions, so they can be IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        _wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # Take the write lock at the start: read-then-write transactions never deadlock.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _wal(cursor: Any) -> None:
    """Switch to WAL. Two processes opening a new file at once can both ask for the lock the
    switch needs; SQLite then answers one "database is locked" at once, without waiting (it
    would deadlock), so that one asks again, for up to the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("bot.store").joinpath("migrations"))
    )
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the schema to the newest revision (`chatops db upgrade`; the embedded default runs it
    at start). A database with no tables yet is built from the models in one step and stamped
    with the newest revision, Alembic's recipe for a fresh database (a tenth of the time of six
    migrations on SQLite); that the migrations build exactly the same schema is a test."""
    engine = make_engine(url)
    try:
        # At the newest revision already (every start but the first): no need for Alembic.
        with engine.connect() as connection:
            if _revision(connection) == HEAD:
                return
    finally:
        engine.dispose()
    from alembic import command

    config = alembic_config(url)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            # On SQLite the transaction holds the write lock from its start, and on PostgreSQL
            # an advisory lock: two processes starting on one fresh database build it once.
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
            if not inspect(connection).get_table_names():
                SQLModel.metadata.create_all(connection)
                config.attributes["connection"] = connection
                command.stamp(config, "head")
                return
    finally:
        engine.dispose()
    command.upgrade(config, "head")


def migrate(url: str, revision: str = "head") -> None:
    """Run the migrations themselves, one by one, even on an empty database (the tests compare
    their result with the models')."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def _revision(connection: Any) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    found = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return str(found) if found is not None else None


# Any constant: the key of the advisory lock taken while a fresh database is built.
_SCHEMA_LOCK = 0x636861746F7073


def through_restart(action: Callable[[int], T], what: str) -> T:
    """`action(attempt)`, tried again while the database is unreachable (a restart), with a
    growing pause; the last failure is raised. For writes whose work is already done."""
    delay = 0.5
    for attempt in range(RESTART_ATTEMPTS):
        try:
            return action(attempt)
        except OperationalError:
            if attempt == RESTART_ATTEMPTS - 1:
                raise
            log.warning("%s: the store is unavailable; retrying in %.1f s", what, delay)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")  # pragma: no cover
