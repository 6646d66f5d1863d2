"""Schema migrations of the store's database, run by :class:`agents.store.Store` when it opens one.

The revisions are Alembic scripts in ``versions/``; the database records the revision it is at
in Alembic's ``alembic_version`` table. :func:`upgrade` handles three cases:

* a database with none of the store's tables gets the current schema straight from the models
  and is stamped at the head revision (no revision runs);
* a workspace written before revisions existed (tables, but no version row) is taken to be at
  the base and every revision runs;
* a versioned database runs the revisions it lacks (none when it is at head).

Everything happens in the caller's transaction, which on SQLite holds the write lock and on
PostgreSQL an advisory lock, so two processes opening the same database migrate it once.

Writing a revision: add ``versions/NNNN_what.py`` whose ``down_revision`` is the current head
(``alembic revision -m "..."`` with ``script_location`` pointing here uses ``script.py.mako``).
A revision must tolerate a table that does not exist yet: optional modules (the strategy
library) create their tables the first time they are used, at their current schema.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).parent
#: A table every database the store ever wrote has; its presence without a version row marks a
#: workspace from before revisions existed.
MARKER_TABLE = "trajectories"
# Any fixed 64-bit number works; it only has to be the same for every process.
_POSTGRES_LOCK_KEY = 0x6167_656E_7473_6462


class SchemaTooNew(RuntimeError):
    """The database is at a revision this version of the package does not know."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection  # read by env.py
    return config


@cache
def _scripts() -> ScriptDirectory:
    # Parsed once per process: every Store opened afterwards only compares revision ids.
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this package knows."""
    revision = _scripts().get_current_head()
    assert revision is not None, "agents/migrations/versions holds no revision"
    return revision


def current(connection: Connection) -> str | None:
    """The revision the database on ``connection`` is at, or None when it has none recorded."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, metadata: MetaData) -> str | None:
    """Bring the database on ``connection`` to the head revision and create missing tables.

    Args:
        connection: A connection inside a transaction; the caller commits it.
        metadata: The models' tables, created where missing once the revisions have run.

    Returns:
        The revision the database was at before, or None for a new or unversioned one.

    Raises:
        SchemaTooNew: When a newer release of the package wrote the database.
    """
    if connection.dialect.name == "postgresql":
        # Held until the transaction ends: a second process waits here, then finds head.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_LOCK_KEY})
    context = MigrationContext.configure(connection)
    start = context.get_current_revision()
    if start is None and not inspect(connection).has_table(MARKER_TABLE):
        metadata.create_all(connection)
        context.stamp(_scripts(), "head")
        return None
    if start != head():
        try:
            if start is not None:
                _scripts().get_revision(start)
        except CommandError as error:
            raise SchemaTooNew(
                f"The database is at schema revision {start!r}, which this release does not "
                f"know (newest: {head()!r}); it was written by a newer agents-distill, so open "
                "it with that release."
            ) from error
        command.upgrade(_config(connection), "head")
    metadata.create_all(connection)
    return start
