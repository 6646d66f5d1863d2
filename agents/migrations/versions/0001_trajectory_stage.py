"""Trajectories name the stage that wrote them in an indexed ``stage`` column.

Before this revision schemes kept the stage in the ``meta`` JSON as ``meta["stage"]``; the
upgrade copies it into the column. ``meta`` itself is left as it was, so nothing is lost and a
downgrade only has to put the stage back for rows written after the upgrade.

The copy runs in Python, in chunks of rows, rather than in SQL: JSON extraction is spelled
differently on every backend, and this runs once per workspace.

Revision ID: 0001
Revises: (none: the first revision; the schema before it is the base)
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLE = "trajectories"
INDEX = "ix_trajectories_stage"  # the name SQLAlchemy gives ``Field(index=True)``
_CHUNK = 1000

_trajectories = sa.table(
    TABLE,
    sa.column("id", sa.Integer),
    sa.column("meta", sa.JSON),
    sa.column("stage", sa.String),
)


def _batches(bind: Connection, where: Any) -> Any:
    """``(id, meta, stage)`` rows matching ``where`` in id order, one chunk at a time."""
    last = 0
    table = _trajectories.c
    while True:
        query = (
            sa.select(table.id, table.meta, table.stage)
            .where(table.id > last, where)
            .order_by(table.id)
            .limit(_CHUNK)
        )
        rows = bind.execute(query).all()
        if not rows:
            return
        last = rows[-1].id
        yield rows


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if not inspector.has_table(TABLE):
        return  # created with the column when the models' tables are created
    if "stage" not in {c["name"] for c in inspector.get_columns(TABLE)}:
        op.add_column(TABLE, sa.Column("stage", sa.String(), nullable=True))
    if INDEX not in {i["name"] for i in inspector.get_indexes(TABLE)}:
        op.create_index(INDEX, TABLE, ["stage"])

    update = (
        _trajectories.update()
        .where(_trajectories.c.id == sa.bindparam("row_id"))
        .values(stage=sa.bindparam("row_stage"))
    )
    for rows in _batches(bind, _trajectories.c.stage.is_(None)):
        values = [
            {"row_id": row.id, "row_stage": str(row.meta["stage"])}
            for row in rows
            if isinstance(row.meta, dict) and row.meta.get("stage") is not None
        ]
        if values:
            bind.execute(update, values)


def downgrade() -> None:
    bind = op.get_bind()
    # Releases before this revision read the stage from meta: put it back where it is missing.
    update = (
        _trajectories.update()
        .where(_trajectories.c.id == sa.bindparam("row_id"))
        .values(meta=sa.bindparam("row_meta", type_=sa.JSON))
    )
    for rows in _batches(bind, _trajectories.c.stage.is_not(None)):
        values = [
            {"row_id": row.id, "row_meta": {**row.meta, "stage": row.stage}}
            for row in rows
            if isinstance(row.meta, dict) and "stage" not in row.meta
        ]
        if values:
            bind.execute(update, values)
    # Batch mode: SQLite cannot drop a column in place on every version, so it copies the table.
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_index(INDEX)
        batch.drop_column("stage")
