"""Schema migrations: a workspace written before ``trajectories.stage`` existed still opens.

The old database is built from a copy of the tables as that release declared them, so these
tests keep passing however the models change later. They run on SQLite, and on PostgreSQL too
when ``AGENTS_TEST_POSTGRES_URL`` is set (that database's tables are dropped).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    create_engine,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlmodel import AutoString, SQLModel

from agents import migrations
from agents.store import Store, Trajectory, UTCDateTime, Workspace, utcnow

POSTGRES_URL = os.environ.get("AGENTS_TEST_POSTGRES_URL")

# ``trajectories`` exactly as the release before the ``stage`` column created it on SQLite
# (whitespace aside).
OLD_SQLITE_DDL = """CREATE TABLE trajectories (
    id INTEGER NOT NULL,
    run_id VARCHAR NOT NULL,
    item_id INTEGER,
    round INTEGER NOT NULL,
    role VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    messages JSON NOT NULL,
    tools JSON,
    final_answer VARCHAR,
    verdict VARCHAR,
    reward FLOAT,
    meta JSON NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(run_id) REFERENCES runs (id),
    FOREIGN KEY(item_id) REFERENCES items (id)
)"""


def old_metadata() -> MetaData:
    """The tables of the release before revisions: today's, but ``trajectories`` without stage."""
    old = MetaData()
    for table in SQLModel.metadata.sorted_tables:
        if table.name != "trajectories":
            table.to_metadata(old)
    Table(
        "trajectories",
        old,
        Column("id", Integer, primary_key=True),
        Column("run_id", AutoString, ForeignKey("runs.id"), nullable=False, index=True),
        Column("item_id", Integer, ForeignKey("items.id"), index=True),
        Column("round", Integer, nullable=False, index=True),
        Column("role", AutoString, nullable=False, index=True),
        Column("model", AutoString, nullable=False),
        Column("messages", JSON, nullable=False),
        Column("tools", JSON(none_as_null=True)),
        Column("final_answer", AutoString),
        Column("verdict", AutoString, index=True),
        Column("reward", Float),
        Column("meta", JSON, nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
    )
    return old


def _reset(engine: Engine) -> None:
    """Drop every table the tests may have left, the version table included."""
    SQLModel.metadata.drop_all(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database."""
    if request.param == "sqlite":
        yield Workspace(tmp_path / "ws").ensure().db_url
        return
    if not POSTGRES_URL:
        pytest.skip("AGENTS_TEST_POSTGRES_URL is not set")
    engine = create_engine(POSTGRES_URL)
    _reset(engine)
    yield POSTGRES_URL
    engine.dispose()


ROWS: list[tuple[str, dict[str, Any]]] = [
    ("solver", {"stage": "solve", "sample": 0}),
    ("solver", {"stage": "solve", "sample": 1}),
    ("solver", {"stage": "utility"}),
    ("teacher", {"domain": "math"}),  # written without a stage
]


def old_workspace(url: str, extra: int = 0) -> str:
    """Create the old schema at ``url`` with one run and :data:`ROWS` (plus ``extra`` rows with
    stage ``bulk``, to cross chunk boundaries); returns the run id."""
    engine = create_engine(url)
    old = old_metadata()
    old.create_all(engine)
    now = utcnow()
    trajectories = old.tables["trajectories"]
    rows = [*ROWS, *[("bulk", {"stage": "bulk", "i": i}) for i in range(extra)]]
    with engine.begin() as connection:
        connection.execute(
            insert(old.tables["runs"]),
            [
                {
                    "id": "old-run",
                    "scheme": "socratic",
                    "status": "finished",
                    "config": {},
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        connection.execute(
            insert(trajectories),
            [
                {
                    "run_id": "old-run",
                    "round": 1,
                    "role": role,
                    "model": "m",
                    "messages": [{"role": "user", "content": "hi"}],
                    "meta": meta,
                    "created_at": now,
                }
                for role, meta in rows
            ],
        )
    engine.dispose()
    return "old-run"


def columns(store: Store) -> set[str]:
    return {c["name"] for c in inspect(store.engine).get_columns("trajectories")}


def revision(store: Store) -> str | None:
    with store.engine.connect() as connection:
        return migrations.current(connection)


def test_the_old_schema_copy_is_what_the_old_release_wrote(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old_workspace(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        ddl = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'trajectories'"
        ).scalar()
    engine.dispose()
    assert ddl.split() == OLD_SQLITE_DDL.split()


def test_an_old_workspace_is_migrated_and_backfilled(url: str) -> None:
    run_id = old_workspace(url, extra=2500)
    store = Store(url)
    assert "stage" in columns(store)
    indexes = {
        i["name"]: i["column_names"] for i in inspect(store.engine).get_indexes("trajectories")
    }
    assert indexes["ix_trajectories_stage"] == ["stage"]
    assert revision(store) == migrations.head()

    rows = store.trajectories(run_id)
    assert [r.stage for r in rows[: len(ROWS)]] == ["solve", "solve", "utility", None]
    assert [r.meta for r in rows[: len(ROWS)]] == [meta for _, meta in ROWS]  # meta untouched
    assert [r.meta["sample"] for r in store.trajectories(run_id, stage="solve")] == [0, 1]
    assert len(store.trajectories(run_id, role="solver", round=1, stage="utility")) == 1
    assert len(store.trajectories(run_id, stage="bulk")) == 2500
    assert store.trajectories(run_id, stage="nope") == []

    # The migrated database takes new rows with a stage like a new one does.
    store.add_trajectories([Trajectory(run_id=run_id, role="solver", stage="solve", round=2)])
    assert len(store.trajectories(run_id, stage="solve")) == 3
    store.close()


def test_opening_a_migrated_workspace_again_changes_nothing(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = old_workspace(url)
    store = Store(url)
    # A row that still has its stage only in meta: a second migration would fill its column.
    with store.session(write=True) as session:
        session.add(Trajectory(run_id=run_id, role="late", meta={"stage": "solve"}))
    store.close()

    def no_upgrade(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a database at head ran its migrations again")

    monkeypatch.setattr(migrations.command, "upgrade", no_upgrade)
    store = Store(url)
    assert revision(store) == migrations.head()
    (late,) = store.trajectories(run_id, role="late")
    assert late.stage is None
    store.close()


def test_a_new_database_is_created_at_head_without_running_revisions(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_upgrade(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a new database should be created from the models and stamped")

    monkeypatch.setattr(migrations.command, "upgrade", no_upgrade)
    store = Store(url)
    assert revision(store) == migrations.head()
    assert "stage" in columns(store)
    run = store.create_run("socratic", {})
    store.add_trajectories([Trajectory(run_id=run.id, role="solver", stage="solve")])
    assert [t.stage for t in store.trajectories(run.id, stage="solve")] == ["solve"]
    store.close()


def test_a_database_from_a_newer_release_is_refused(url: str) -> None:
    Store(url).close()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'from-the-future'"))
    engine.dispose()
    with pytest.raises(migrations.SchemaTooNew, match="newer"):
        Store(url)


def test_the_stage_revision_downgrades_back_into_meta(url: str) -> None:
    from alembic import command

    run_id = old_workspace(url)
    store = Store(url)
    store.add_trajectories([Trajectory(run_id=run_id, role="new", stage="eval", meta={"x": 1})])
    with store.engine.execution_options(agents_write=True).begin() as connection:
        command.downgrade(migrations._config(connection), "base")
    store.close()

    engine = create_engine(url)
    assert "stage" not in {c["name"] for c in inspect(engine).get_columns("trajectories")}
    trajectories = old_metadata().tables["trajectories"]
    with engine.connect() as connection:
        metas = connection.execute(select(trajectories.c.meta).order_by(trajectories.c.id)).all()
    engine.dispose()
    assert [m for (m,) in metas] == [*(meta for _, meta in ROWS), {"x": 1, "stage": "eval"}]
    # ... and up again.
    store = Store(url)
    assert [t.stage for t in store.trajectories(run_id, role="new")] == ["eval"]
    store.close()


def test_processes_opening_an_old_workspace_together_migrate_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    run_id = old_workspace(url)
    errors: list[Exception] = []
    stores: list[Store] = []

    def open_store() -> None:
        try:
            stores.append(Store(url))
        except Exception as error:  # collected so the main thread can assert on it
            errors.append(error)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [t.stage for t in stores[0].trajectories(run_id)] == ["solve", "solve", "utility", None]
    for store in stores:
        store.close()
