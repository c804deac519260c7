"""PostgreSQL and Redis for the multi-machine tests, when the environment provides them.

`CHATOPS_TEST_DATABASE_URL` / `CHATOPS_TEST_REDIS_URL` (set by .ci/run) turn them on; without,
those tests skip and say why. Each test gets its own database and its own queue name."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

DATABASE_URL = os.environ.get("CHATOPS_TEST_DATABASE_URL")
REDIS_URL = os.environ.get("CHATOPS_TEST_REDIS_URL")

needs_postgres = pytest.mark.skipif(
    not DATABASE_URL, reason="set CHATOPS_TEST_DATABASE_URL to run the PostgreSQL variant"
)
needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="set CHATOPS_TEST_REDIS_URL to run the Redis variant"
)


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    import psycopg

    assert DATABASE_URL
    name = f"chatops_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = DATABASE_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Servers:
    """A PostgreSQL database and a Redis URL for one test; private ones can be restarted."""

    database_url: str
    redis_url: str
    restart_redis: Callable[[], None]
    restart_postgres: Callable[[], None]


def _not_private() -> None:
    raise AssertionError("only private servers restart: mark the test private_servers")


@contextmanager
def shared_servers() -> Iterator[Servers]:
    """A fresh database on the shared server, and the shared Redis (each test its own queue)."""
    assert REDIS_URL
    with fresh_postgres() as url:
        yield Servers(url, REDIS_URL, _not_private, _not_private)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(check: list[str]) -> bool:
    return subprocess.run(check, capture_output=True, check=False).returncode == 0


def _wait(check: list[str], what: str) -> None:
    deadline = time.monotonic() + 30
    while not _answers(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come up")
        time.sleep(0.1)


@contextmanager
def private_servers() -> Iterator[Servers]:
    """A PostgreSQL cluster and a Redis server of this test's own, on free ports, so that
    restarting them touches no other test running at the same time. Needs root (the cluster
    runs as the postgres user) and Debian's pg_createcluster."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    cluster = f"chatops{uuid.uuid4().hex[:8]}"
    pg_port, redis_port = _free_port(), _free_port()
    ctl = ["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster]
    subprocess.run(
        ["pg_createcluster", version, cluster, "-p", str(pg_port), "--", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    redis_argv = [
        "redis-server",
        "--bind",
        "127.0.0.1",
        "--port",
        str(redis_port),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    redis_ping = ["redis-cli", "-h", "127.0.0.1", "-p", str(redis_port), "ping"]
    pg_ready = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(pg_port)]
    redis: list[subprocess.Popen[bytes]] = []

    def start_redis() -> None:
        redis.append(subprocess.Popen(redis_argv, stdout=subprocess.DEVNULL))
        _wait(redis_ping, "the private Redis")

    def restart_redis() -> None:
        """The queue server restarts: it keeps nothing on disk, so queued tasks are gone."""
        redis[-1].terminate()
        redis[-1].wait(timeout=10)
        start_redis()

    def restart_postgres() -> None:
        subprocess.run([*ctl, "restart"], check=True, capture_output=True)
        _wait(pg_ready, "the private PostgreSQL")

    try:
        subprocess.run([*ctl, "start"], check=True, capture_output=True)
        _wait(pg_ready, "the private PostgreSQL")
        start_redis()
        yield Servers(
            f"postgresql://postgres@127.0.0.1:{pg_port}/postgres",
            f"redis://127.0.0.1:{redis_port}/0",
            restart_redis,
            restart_postgres,
        )
    finally:
        for process in redis:
            if process.poll() is None:
                process.kill()
                process.wait()
        subprocess.run(
            ["pg_dropcluster", "--stop", version, cluster], check=False, capture_output=True
        )
