"""Storage: SQLModel tables, the engine (SQLite in WAL mode, or PostgreSQL), and queries.
Alembic (`bot/store/migrations`) owns the schema."""
