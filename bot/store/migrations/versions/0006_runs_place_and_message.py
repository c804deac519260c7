"""runs: where a run reports, in the surface's own terms (issue 15): channel, thread_ts and
report_ts become place, message and report_message, wider, with their data

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 14:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_RENAMES = (
    ("channel", "place", 64, 255),
    ("thread_ts", "message", 32, 128),
    ("report_ts", "report_message", 32, 128),
)


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_thread")
        batch_op.drop_index("ix_runs_report_message")
        for old, new, old_length, new_length in _RENAMES:
            batch_op.alter_column(
                old,
                new_column_name=new,
                existing_type=sa.String(length=old_length),
                type_=sa.String(length=new_length),
                existing_nullable=True,
            )
    # A second pass: SQLite's batch mode builds the new table first, then the new indexes.
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_message", ["message"], unique=False)
        batch_op.create_index("ix_runs_report_message", ["report_message"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_report_message")
        batch_op.drop_index("ix_runs_message")
        for old, new, old_length, new_length in _RENAMES:
            batch_op.alter_column(
                new,
                new_column_name=old,
                existing_type=sa.String(length=new_length),
                type_=sa.String(length=old_length),
                existing_nullable=True,
            )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_thread", ["thread_ts"], unique=False)
        batch_op.create_index("ix_runs_report_message", ["report_ts"], unique=False)
