"""PostgreSQL and Redis for the multi-machine tests, when the environment provides them.

`CHATOPS_TEST_DATABASE_URL` / `CHATOPS_TEST_REDIS_URL` (set by .ci/run) turn them on; without,
those tests skip and say why. Each test gets its own database and its own queue name."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

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
