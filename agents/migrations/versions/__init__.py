"""The store's schema revisions, one Alembic script per file (see :mod:`agents.migrations`)."""
