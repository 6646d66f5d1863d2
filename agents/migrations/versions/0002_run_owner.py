"""Runs record who is running them: ``owner`` (``host:pid``) and ``heartbeat_at``.

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

TABLE = "runs"
COLUMNS = (
    ("owner", sa.String()),
    ("heartbeat_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table(TABLE):
        return  # created with the columns when the models' tables are created
    present = {c["name"] for c in inspector.get_columns(TABLE)}
    for name, kind in COLUMNS:
        if name not in present:
            op.add_column(TABLE, sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    # Batch mode: SQLite cannot drop a column in place on every version, so it copies the table.
    with op.batch_alter_table(TABLE) as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
