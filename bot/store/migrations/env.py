"""Alembic environment: the URL comes from the caller's config, the metadata from the models.

A caller that already holds a connection (`upgrade` building a fresh database) passes it in
`config.attributes["connection"]`, so the tables and the stamp share one transaction."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import bot.store.models  # noqa: F401  (registers the tables)
from bot.store.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    shared: Connection | None = config.attributes.get("connection")
    if shared is not None:
        _migrate(shared)
        return
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"
    engine = make_engine(url)
    with engine.connect() as connection:
        _migrate(connection)
    engine.dispose()


run_migrations_online()
