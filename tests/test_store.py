"""Storage: migrations match the models; SQLite in WAL with aware datetimes; races lose nothing."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from bot.store.db import alembic_config, make_engine, migrate, upgrade
from bot.store.models import AuditEvent
from bot.store.runs import NewRun, RunStore
from tests.support.services import fresh_postgres, needs_postgres


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'chatops.db'}"
    upgrade(url)
    return url


def test_migrations_build_exactly_the_models_schema_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    migrate(url)  # the migrations one by one, not the fresh-database shortcut
    command.check(alembic_config(url))  # raises if the models differ from the migrations
    _same_schema(url, f"sqlite:///{tmp_path / 'fresh.db'}")


@needs_postgres
def test_migrations_build_exactly_the_models_schema_on_postgres() -> None:
    with fresh_postgres() as url:
        migrate(url)
        command.check(alembic_config(url))
        upgrade(url)  # idempotent
        with fresh_postgres() as fresh:
            _same_schema(url, fresh)


def _same_schema(migrated: str, fresh: str) -> None:
    """A fresh database built by `upgrade` (the models, stamped) is the migrations' database:
    the same tables, columns, types, nullability, indexes and unique constraints, at head."""
    upgrade(fresh)
    shapes = []
    for url in (migrated, fresh):
        engine = make_engine(url)
        with engine.connect() as connection:
            seen = inspect(connection)
            shape = {
                table: (
                    sorted(
                        (c["name"], str(c["type"]), c["nullable"]) for c in seen.get_columns(table)
                    ),
                    sorted((i["name"], tuple(i["column_names"])) for i in seen.get_indexes(table)),
                    sorted(tuple(u["column_names"]) for u in seen.get_unique_constraints(table)),
                    seen.get_pk_constraint(table)["constrained_columns"],
                )
                for table in seen.get_table_names()
            }
            version = connection.execute(text("SELECT version_num FROM alembic_version")).one()
        engine.dispose()
        shapes.append((shape, version))
    assert shapes[0] == shapes[1]
    assert shapes[1][1][0] == ScriptDirectory.from_config(alembic_config(fresh)).get_current_head()
    upgrade(fresh)  # and a second start finds it at head


@pytest.mark.slow
def test_two_processes_starting_on_one_fresh_database_build_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'chatops.db'}"
    code = f"from bot.store.db import upgrade; upgrade({url!r})"
    starts = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE) for _ in range(3)
    ]
    for process in starts:
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
        assert connection.execute(text("SELECT count(*) FROM runs")).scalar() == 0
    engine.dispose()


def _run_places_survive_the_upgrade(url: str) -> None:
    """A database at 0005 holding Slack runs: after 0006 each run reports to the same place,
    and its messages are found by the new names."""
    config = alembic_config(url)
    command.upgrade(config, "0005")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO runs (id, requester, surface, repo, kind, target, status,"
                " stop_requested, attempts, channel, thread_ts, report_ts, created_at,"
                " enqueued_at) VALUES ('r1', 'W1', 'slack', 'shop', 'branch', 'feature/x',"
                " 'done', false, 1, 'C111', '1700000000.000100', '1700000000.000200',"
                " '2026-11-30 10:00:00+00:00', '2026-11-30 10:00:00+00:00')"
            )
        )
    engine.dispose()
    command.upgrade(config, "head")
    store = RunStore(make_engine(url))
    run = store.get("r1")
    assert run is not None
    assert (run.place, run.message, run.report_message) == (
        "C111",
        "1700000000.000100",
        "1700000000.000200",
    )
    found = store.run_for_message("C111", "1700000000.000200")
    assert found is not None and found.id == "r1"
    command.check(config)
    command.downgrade(config, "0005")  # and back, with the data
    engine = make_engine(url)
    with engine.connect() as connection:
        row = connection.execute(text("SELECT channel, thread_ts FROM runs")).one()
    assert tuple(row) == ("C111", "1700000000.000100")
    engine.dispose()


def test_run_places_survive_the_upgrade_on_sqlite(tmp_path: Path) -> None:
    _run_places_survive_the_upgrade(f"sqlite:///{tmp_path / 'old.db'}")


@needs_postgres
def test_run_places_survive_the_upgrade_on_postgres() -> None:
    with fresh_postgres() as url:
        _run_places_survive_the_upgrade(url)


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_datetimes_come_back_timezone_aware_utc(sqlite_url: str) -> None:
    store = RunStore(make_engine(sqlite_url))
    run, _ = store.create(NewRun(requester="U1", surface="shell", repo="r", target="feature/x"))
    loaded = store.get(run.id)
    assert loaded is not None
    assert loaded.created_at.tzinfo is UTC
    assert abs((loaded.created_at - datetime.now(UTC)).total_seconds()) < 60


def test_naive_datetimes_are_refused(sqlite_url: str) -> None:
    from bot.store.db import session_scope

    engine = make_engine(sqlite_url)
    with pytest.raises(Exception, match="timezone-aware"), session_scope(engine) as session:
        session.add(AuditEvent(actor="x", action="a", outcome="ok", at=datetime(2026, 1, 1)))


def test_the_same_event_key_starts_one_run(sqlite_url: str) -> None:
    store = RunStore(make_engine(sqlite_url))
    new = NewRun(requester="U1", surface="slack", repo="r", target="feature/x")
    first, created = store.create(new, event_key="slack:Ev1")
    again, created_again = store.create(new, event_key="slack:Ev1")
    assert created and not created_again
    assert again.id == first.id
    assert len(store.recent(limit=50)) == 1


def _race(store: RunStore) -> tuple[list[str], list[str]]:
    created: list[str] = []
    claimed: list[str] = []
    lock = threading.Lock()

    def request(n: int) -> None:
        for i in range(10):
            run, _ = store.create(
                NewRun(requester=f"U{n}", surface="shell", repo="r", target=f"feature/{n}-{i}")
            )
            with lock:
                created.append(run.id)

    threads = [threading.Thread(target=request, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    target = created[0]

    def claim(n: int) -> None:
        if store.claim(target, f"worker-{n}", 60) is not None:
            with lock:
                claimed.append(f"worker-{n}")

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return created, claimed


def test_concurrent_requests_and_claims_on_sqlite_lose_nothing(sqlite_url: str) -> None:
    store = RunStore(make_engine(sqlite_url))
    created, claimed = _race(store)
    assert len(set(created)) == 80
    assert len(store.recent(limit=200)) == 80
    assert len(claimed) == 1
    run = store.get(created[0])
    assert run is not None and run.status == "running" and run.attempts == 1


@needs_postgres
def test_concurrent_requests_and_claims_on_postgres_lose_nothing() -> None:
    with fresh_postgres() as url:
        upgrade(url)
        engine = make_engine(url)
        store = RunStore(engine)
        created, claimed = _race(store)
        assert len(store.recent(limit=200)) == 80
        assert len(claimed) == 1
        with engine.connect() as connection:
            assert connection.execute(text("select count(*) from runs")).scalar() == 80
        engine.dispose()


def test_an_expired_lease_can_be_claimed_again_and_the_loser_stores_nothing(
    sqlite_url: str,
) -> None:
    store = RunStore(make_engine(sqlite_url))
    run, _ = store.create(NewRun(requester="U1", surface="shell", repo="r", target="feature/x"))
    assert store.claim(run.id, "first", lease_s=-1) is not None  # already expired
    assert store.reap(max_attempts=3, requeue_after_s=600) == [run.id]
    assert store.claim(run.id, "second", lease_s=60) is not None
    assert store.heartbeat(run.id, "first", 60) is False  # the first worker learns it lost
    from agents.report import Report, Risk, RiskLevel, Target

    report = Report(
        run_id=run.id,
        summary="s",
        target=Target(repo="r", branch="feature/x", base="main", head_sha="a", base_sha="b"),
        risk=Risk(level=RiskLevel.low, score=0),
    )
    assert store.finish(run.id, "first", report) is False
    assert store.finish(run.id, "second", report) is True
    assert store.finish(run.id, "second", report) is False
    assert store.reports_count(run.id) == 1


def test_a_run_out_of_attempts_fails_visibly(sqlite_url: str) -> None:
    store = RunStore(make_engine(sqlite_url))
    run, _ = store.create(NewRun(requester="U1", surface="shell", repo="r", target="feature/x"))
    for n in range(3):
        assert store.claim(run.id, f"w{n}", lease_s=-1) is not None
    assert store.reap(max_attempts=3, requeue_after_s=600) == []
    failed = store.get(run.id)
    assert failed is not None and failed.status == "failed"
    assert "stopped 3 times" in (failed.error or "")


def test_writes_ride_out_a_database_restart_and_give_up_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy.exc import OperationalError

    from bot.store import db

    pauses: list[float] = []
    monkeypatch.setattr(db.time, "sleep", pauses.append)
    calls: list[int] = []

    def flaky(attempt: int) -> str:
        calls.append(attempt)
        if attempt < 2:
            raise OperationalError("UPDATE", {}, Exception("server closed the connection"))
        return "stored"

    assert db.through_restart(flaky, "test") == "stored"
    assert calls == [0, 1, 2] and pauses == [0.5, 1.0]

    def down(attempt: int) -> str:
        raise OperationalError("UPDATE", {}, Exception("connection refused"))

    pauses.clear()
    with pytest.raises(OperationalError):
        db.through_restart(down, "test")
    assert pauses == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]  # about half a minute, then it gives up


def test_the_head_known_without_alembic_is_alembics_and_an_older_database_is_upgraded(
    tmp_path: Path,
) -> None:
    """A start reads the schema's revision and skips Alembic when it is current: the head it
    compares with, taken from the migration files' names, must be Alembic's own."""
    from bot.store.db import HEAD

    url = f"sqlite:///{tmp_path / 'old.db'}"
    assert ScriptDirectory.from_config(alembic_config(url)).get_current_head() == HEAD
    migrate(url, "0005")
    upgrade(url)  # not current: Alembic runs the rest
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    engine.dispose()


def test_the_switch_to_wal_asks_again_when_sqlite_answers_locked_at_once() -> None:
    """Two processes opening a new file can both want the lock the switch to WAL needs; SQLite
    answers one of them "database is locked" without waiting. That one asks again (this failed
    a three-process start once under load); any other error is raised at once."""
    import sqlite3

    from bot.store.db import _wal

    class Cursor:
        def __init__(self, errors: list[str]) -> None:
            self.errors, self.calls = errors, 0

        def execute(self, sql: str) -> None:
            self.calls += 1
            if self.errors:
                raise sqlite3.OperationalError(self.errors.pop(0))

    busy = Cursor(["database is locked", "database is locked"])
    _wal(busy)
    assert busy.calls == 3
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        _wal(Cursor(["disk I/O error"]))
