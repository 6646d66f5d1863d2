"""Alembic's entry point: runs the revisions on the connection :func:`agents.migrations.upgrade`
hands over, inside that connection's transaction (so nothing here commits)."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "The store's migrations run from agents.migrations.upgrade(), which passes a connection; "
        "open the database with agents.store.Store instead of calling alembic directly."
    )
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
