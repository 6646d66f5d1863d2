"""Runs record who is running them (``owner``, ``host:pid``, and ``heartbeat_at``); ledger
lines count the retries their calls needed (``calls.retries``).

A run whose process died (``kill -9``, a power cut) stays ``running`` in the table; with these
columns :func:`agents.store.run_state` tells it apart: on the same host the pid is gone, elsewhere
the heartbeat has stopped. Old rows get NULLs, which read as "not known to be alive".

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = {
    "runs": [
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    ],
    # Older lines were written without retries being counted: 0, as the ledger read then.
    "calls": [sa.Column("retries", sa.Integer(), nullable=False, server_default="0")],
}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table, columns in COLUMNS.items():
        if not inspector.has_table(table):
            continue  # created with the columns when the models' tables are created
        present = {c["name"] for c in inspector.get_columns(table)}
        for column in columns:
            if column.name not in present:
                op.add_column(table, column.copy())


def downgrade() -> None:
    # In place on every backend (SQLite 3.35+ drops plain columns itself): batch mode would copy
    # the runs table, which the other tables' foreign keys refer to.
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, columns in COLUMNS.items():
        for column in reversed(columns):
            if sqlite:
                op.execute(f'ALTER TABLE {table} DROP COLUMN "{column.name}"')
            else:
                op.drop_column(table, column.name)
