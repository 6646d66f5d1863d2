"""Where everything a run produces is kept: runs, stages, items, trajectories, pairs, checkpoints,
the call ledger and the response cache.

The tables are SQLModel classes; :class:`Store` wraps one SQLAlchemy engine with short methods,
each its own transaction, that return detached rows safe to use after the session closes.
SQLite (WAL mode) is the default; any SQLAlchemy URL works, e.g. Postgres for shared runs.

SQLite notes: the stdlib driver only issues ``BEGIN`` before DML, and a transaction that reads
before it writes can fail with "database is locked" without waiting for the busy timeout. So
SQLAlchemy issues ``BEGIN`` itself, and write methods use ``BEGIN IMMEDIATE``, which takes the
write lock up front and queues behind other writers instead of failing.

Schema: opening a store brings its database to the current schema (:mod:`agents.migrations`),
so a workspace written by an earlier release opens as it is; a new database is created at the
current schema directly.

One rule for idempotency on resume: a stage's own rows go in with
:meth:`Store.commit_stage`, all or nothing. A write a stage makes *outside* that transaction (a
side store: the strategy library's SQL tables and its Chroma index) must be keyed by where it
came from — run, round, stage and the scenario or iteration inside the stage, e.g. the
``origin`` of a strategy — and look that key up before writing. A stage re-run after a crash
then finds what its first attempt wrote and reuses it instead of writing a duplicate, and it
repairs what the crash left half done (a row the index lacks) on the way.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import JSON, Column, DateTime, UniqueConstraint, event, func, insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

from agents import migrations
from agents.liveness import HEARTBEAT_S as HEARTBEAT_S
from agents.liveness import run_state as run_state
from agents.liveness import this_owner
from agents.workspace import WORKSPACE_ENV as WORKSPACE_ENV
from agents.workspace import Workspace as Workspace

logger = logging.getLogger(__name__)
RowT = TypeVar("RowT", bound=SQLModel)

RUN_STATUSES = ("created", "running", "paused", "finished", "failed")
VERDICTS = ("correct", "incorrect", "unverifiable")
CHECKPOINT_KINDS = ("lora", "merged")
SQLITE_BUSY_TIMEOUT_MS = 60_000
# Keys per ``IN (...)`` query: well below SQLite's bound-parameter limit on every build.
_CHUNK = 500


class StoreError(LookupError):
    """A row the caller asked for does not exist."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Datetimes that always come back timezone-aware in UTC.

    SQLite keeps no offset, so values are stored there as naive UTC and tagged on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Each field needs its own Column object, hence these small factories.
def _json(default_factory: Any = dict) -> Any:
    return Field(default_factory=default_factory, sa_column=Column(JSON, nullable=False))


def _json_or_null() -> Any:
    # none_as_null: Python None becomes SQL NULL rather than the JSON text 'null'.
    return Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))


def _created() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


def _when() -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


class Run(SQLModel, table=True):
    """One execution of a scheme; ``id`` is short and readable, e.g. ``20261123-1845-a1b2``."""

    __tablename__ = "runs"

    id: str = Field(primary_key=True, max_length=64)
    scheme: str = Field(index=True)
    name: str | None = None
    status: str = Field(default="created", index=True)
    config: dict[str, Any] = _json()
    created_at: datetime = _created()
    updated_at: datetime = _created()
    finished_at: datetime | None = _when()
    notes: str | None = None
    owner: str | None = None  # "host:pid" of the process running it (while "running")
    heartbeat_at: datetime | None = _when()


class Stage(SQLModel, table=True):
    """One stage of one round of a run (generate, verify, train, ...); the unit of resumption."""

    __tablename__ = "stages"
    __table_args__ = (UniqueConstraint("run_id", "round", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    round: int = 0
    name: str
    status: str = "running"
    started_at: datetime = _created()
    finished_at: datetime | None = _when()
    metrics: dict[str, Any] = _json()


class Item(SQLModel, table=True):
    """A unit of work a scheme poses: a question, a scenario, a task; may derive from a parent."""

    __tablename__ = "items"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    kind: str = Field(default="question", index=True)
    round: int = Field(default=0, index=True)
    content: Any = _json()
    answer: str | None = None
    source: str | None = None
    parent_id: int | None = Field(default=None, foreign_key="items.id")
    zone: str | None = None
    status: str = "new"
    meta: dict[str, Any] = _json()


class Trajectory(SQLModel, table=True):
    """One conversation a model had (OpenAI messages with tool calls) and how it was judged."""

    __tablename__ = "trajectories"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    item_id: int | None = Field(default=None, foreign_key="items.id", index=True)
    round: int = Field(default=0, index=True)
    role: str = Field(index=True)
    # The step of the scheme that wrote it (``solve``, ``eval_dialogues``...): a column rather
    # than a meta key so a stage's rows are found with an indexed query.
    stage: str | None = Field(default=None, index=True)
    model: str = ""
    messages: list[dict[str, Any]] = _json(list)
    tools: list[dict[str, Any]] | None = _json_or_null()
    final_answer: str | None = None
    verdict: str | None = Field(default=None, index=True)
    reward: float | None = None
    meta: dict[str, Any] = _json()
    created_at: datetime = _created()


class PreferencePair(SQLModel, table=True):
    """A preferred and a dispreferred continuation of the same prompt, all as messages."""

    __tablename__ = "preference_pairs"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    item_id: int | None = Field(default=None, foreign_key="items.id")
    round: int = Field(default=0, index=True)
    prompt: list[dict[str, Any]] = _json(list)
    chosen: list[dict[str, Any]] = _json(list)
    rejected: list[dict[str, Any]] = _json(list)
    meta: dict[str, Any] = _json()
    created_at: datetime = _created()


class ModelCheckpoint(SQLModel, table=True):
    """Weights trained for a role in a round; ``parent_id`` links to what they were trained from."""

    __tablename__ = "model_checkpoints"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True)
    role: str = Field(index=True)
    round: int = 0
    base_model: str
    adapter_path: str
    parent_id: int | None = Field(default=None, foreign_key="model_checkpoints.id")
    kind: str = "lora"
    metrics: dict[str, Any] = _json()
    created_at: datetime = _created()


class CallRecord(SQLModel, table=True):
    """One ledger line: a batch of requests an engine served, with its cost."""

    __tablename__ = "calls"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str | None = Field(default=None, foreign_key="runs.id", index=True)
    role: str | None = None
    model: str
    requests: int = 0
    samples: int = 0
    cached_samples: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0  # HTTP attempts that failed (429, 5xx, timeouts, bad bodies) and were retried
    latency_s: float = 0.0
    created_at: datetime = _created()


class CacheEntry(SQLModel, table=True):
    """A cached completion, keyed by the sha256 of the request sample it answers."""

    __tablename__ = "cache"

    key: str = Field(primary_key=True, max_length=64)
    model: str
    completion: dict[str, Any] = _json()
    created_at: datetime = _created()


@dataclass
class Usage:
    """Ledger totals for one (role, model)."""

    calls: int = 0
    requests: int = 0
    samples: int = 0
    cached_samples: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    latency_s: float = 0.0  # last: the one float

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _check_verdicts(trajectories: Sequence[Trajectory]) -> None:
    unknown = {t.verdict for t in trajectories} - {None, *VERDICTS}
    if unknown:
        raise ValueError(f"Verdicts must be one of {VERDICTS} or None, got {sorted(unknown)}.")


def _new_run_id() -> str:
    return f"{utcnow():%Y%m%d-%H%M}-{secrets.token_hex(2)}"


def _chunks(values: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _setup_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see module doc)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("agents_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Store:
    """All persistent state of the framework behind one SQLAlchemy engine.

    Args:
        url: Any SQLAlchemy URL; ``sqlite:///path/agents.db`` gets WAL mode, foreign keys and a
            busy timeout, and its parent directory is created.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StoreError(
                f"{url!r} is not a database URL; use e.g. sqlite:///path/agents.db or "
                "postgresql+psycopg://user@host/db"
            ) from None
        self.dialect = parsed.get_backend_name()
        database = parsed.database or ""
        in_memory = self.dialect == "sqlite" and database in ("", ":memory:")
        if self.dialect == "sqlite" and not in_memory and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # In memory: one shared connection, or each pooled one would see its own empty database
        # (fine for quick experiments, not for concurrent writers).
        memory_args: dict[str, Any] = {"poolclass": StaticPool} if in_memory else {}
        if in_memory:
            memory_args["connect_args"] = {"check_same_thread": False}
        shown = parsed.render_as_string(hide_password=True)
        try:
            self.engine = create_engine(url, **memory_args)
        except NoSuchModuleError:
            raise StoreError(
                f"no database driver for {shown}; use sqlite:/// or postgresql+psycopg://"
            ) from None
        except ImportError as err:
            raise StoreError(
                f"the driver for {shown} is not installed ({err.name}); "
                "pip install 'agents-distill[postgres]'"
            ) from None
        if self.dialect == "sqlite":
            _setup_sqlite(self.engine)
        self._writer = self.engine.execution_options(agents_write=True)
        try:
            with self._writer.begin() as connection:
                migrations.upgrade(connection, SQLModel.metadata)
        except OperationalError as err:
            self.engine.dispose()
            reason = " ".join(str(err.orig).split()).split(" Is the server")[0]
            raise StoreError(
                f"cannot open the store at {shown}: {reason}; check --db-url"
            ) from None

    @classmethod
    def open(cls, workspace: Workspace | None = None, url: str | None = None) -> Store:
        """The store at ``url`` if given, else the workspace's SQLite database.

        Args:
            workspace: Workspace whose ``agents.db`` to use; defaults to :meth:`Workspace.resolve`.
            url: Explicit SQLAlchemy URL (e.g. ``postgresql+psycopg://...``); wins over workspace.
        """
        if url is not None:
            return cls(url)
        workspace = (workspace or Workspace.resolve()).ensure()
        return cls(workspace.db_url)

    def close(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({make_url(self.url).render_as_string(hide_password=True)!r})"

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """A unit of work on the store's tables (and those of modules built on it).

        Rows loaded in it stay usable after it closes (they are not expired on commit).

        Args:
            write: Make it one transaction that commits on exit and rolls back if the block
                raises. On SQLite it takes the write lock up front (``BEGIN IMMEDIATE``), so it
                waits behind other writers instead of failing with "database is locked" when
                it reads before it writes. Without ``write`` the session is for reading; what
                it changes is discarded.

        Yields:
            The session.
        """
        with Session(self._writer if write else self.engine, expire_on_commit=False) as session:
            if not write:
                yield session
                return
            with session.begin():
                yield session

    @staticmethod
    def _require_run(session: Session, run_id: str) -> Run:
        run = session.get(Run, run_id)
        if run is None:
            raise StoreError(f"No run {run_id!r} in this store; list runs with `agents runs`.")
        return run

    # Runs

    def create_run(self, scheme: str, config: dict[str, Any], name: str | None = None) -> Run:
        """Record a new run of ``scheme`` with its resolved config; status ``created``."""
        with self.session(write=True) as session:
            run_id = _new_run_id()
            while session.get(Run, run_id) is not None:
                run_id = _new_run_id()
            run = Run(id=run_id, scheme=scheme, name=name, config=config)
            session.add(run)
        logger.info("created run %s (%s)", run.id, scheme)
        return run

    def get_run(self, run_id: str) -> Run:
        """The run with this id; raises :class:`StoreError` when there is none."""
        with self.session() as session:
            return self._require_run(session, run_id)

    def list_runs(self, scheme: str | None = None, limit: int = 50) -> list[Run]:
        """The most recent runs first, optionally of one scheme only."""
        query = select(Run).order_by(col(Run.created_at).desc(), col(Run.id).desc()).limit(limit)
        if scheme is not None:
            query = query.where(Run.scheme == scheme)
        with self.session() as session:
            return list(session.exec(query).all())

    def set_run_status(self, run_id: str, status: str, notes: str | None = None) -> Run:
        """Move a run to ``created``/``running``/``finished``/``failed``, optionally with notes."""
        if status not in RUN_STATUSES:
            raise ValueError(f"Run status must be one of {RUN_STATUSES}, got {status!r}.")
        with self.session(write=True) as session:
            run = self._require_run(session, run_id)
            run.status = status
            run.updated_at = utcnow()
            run.finished_at = run.updated_at if status in ("finished", "failed") else None
            if status == "running":
                run.owner, run.heartbeat_at = this_owner(), run.updated_at
            if notes is not None:
                run.notes = notes
        return run

    def heartbeat(self, run_id: str) -> None:
        """Note that the process running ``run_id`` is alive (see :func:`run_state`)."""
        with self.session(write=True) as session:
            run = self._require_run(session, run_id)
            run.heartbeat_at = utcnow()

    # Stages

    def _stage_query(self, run_id: str, round: int, name: str) -> Any:
        return select(Stage).where(Stage.run_id == run_id, Stage.round == round, Stage.name == name)

    def start_stage(self, run_id: str, round: int, name: str) -> Stage:
        """Mark a stage started; if it already exists (a resumed run) return it unchanged."""
        query = self._stage_query(run_id, round, name)
        try:
            with self.session(write=True) as session:
                self._require_run(session, run_id)
                stage = session.exec(query).first()
                if stage is None:
                    stage = Stage(run_id=run_id, round=round, name=name)
                    session.add(stage)
            return stage
        except IntegrityError:
            # Another writer inserted it between our read and insert; only possible on
            # backends without SQLite's up-front write lock.
            with self.session() as session:
                return session.exec(query).one()

    def finish_stage(
        self,
        run_id: str,
        round: int,
        name: str,
        metrics: dict[str, Any] | None = None,
        status: str = "finished",
    ) -> Stage:
        """Mark a stage finished (or ``failed``) with its metrics; creates the row if missing."""
        with self.session(write=True) as session:
            self._require_run(session, run_id)
            stage = session.exec(self._stage_query(run_id, round, name)).first()
            if stage is None:
                stage = Stage(run_id=run_id, round=round, name=name)
            stage.status = status
            stage.finished_at = utcnow()
            stage.metrics = dict(metrics or {})
            session.add(stage)
        return stage

    def stage(self, run_id: str, round: int, name: str) -> Stage | None:
        """One stage of a run, or None when it never started."""
        with self.session() as session:
            return session.exec(self._stage_query(run_id, round, name)).first()

    def commit_stage(
        self,
        run_id: str,
        round: int,
        name: str,
        metrics: dict[str, Any] | None = None,
        *,
        add: Sequence[SQLModel] = (),
        update: Sequence[SQLModel] = (),
    ) -> list[SQLModel]:
        """Write a stage's new rows, its updated rows and its ``finished`` mark in ONE transaction.

        A stage that dies before this call leaves nothing behind, and one that got here left
        everything, so a resumed run can trust a finished stage and redo an unfinished one
        without duplicating rows. ``add`` rows are inserted in order (ids are set on return);
        ``update`` rows are merged by primary key.
        """
        _check_verdicts([row for row in add if isinstance(row, Trajectory)])
        with self.session(write=True) as session:
            self._require_run(session, run_id)
            for row in update:
                session.merge(row)
            session.add_all(add)
            stage = session.exec(self._stage_query(run_id, round, name)).first()
            if stage is None:
                stage = Stage(run_id=run_id, round=round, name=name)
            stage.status = "finished"
            stage.finished_at = utcnow()
            stage.metrics = dict(metrics or {})
            session.add(stage)
        return list(add)

    def stages(self, run_id: str) -> list[Stage]:
        """All stages of a run in round, then start order."""
        query = select(Stage).where(Stage.run_id == run_id).order_by(Stage.round, Stage.id)
        with self.session() as session:
            return list(session.exec(query).all())

    # Items, trajectories, preference pairs

    def _add_all(self, rows: Sequence[RowT]) -> list[RowT]:
        with self.session(write=True) as session:
            session.add_all(rows)
        return list(rows)

    def _rows(self, table: type[RowT], run_id: str, **filters: Any) -> list[RowT]:
        """One run's rows of ``table`` in insertion order; filters that are None are ignored."""
        query = select(table).where(table.run_id == run_id)  # type: ignore[attr-defined]
        for column, value in filters.items():
            if value is not None:
                query = query.where(getattr(table, column) == value)
        with self.session() as session:
            return list(session.exec(query.order_by(table.id)).all())  # type: ignore[attr-defined]

    def add_items(self, items: Sequence[Item]) -> list[Item]:
        """Insert items; returns them with ids set."""
        return self._add_all(items)

    def items(self, run_id: str, round: int | None = None, kind: str | None = None) -> list[Item]:
        """A run's items in insertion order, optionally filtered."""
        return self._rows(Item, run_id, round=round, kind=kind)

    def items_by_id(self, ids: Sequence[int]) -> dict[int, Item]:
        """Items by primary key (missing ids are absent from the result)."""
        found: dict[int, Item] = {}
        with self.session() as session:
            for chunk in _chunks(list(ids)):
                for item in session.exec(select(Item).where(col(Item.id).in_(chunk))).all():
                    found[item.id] = item  # type: ignore[index]
        return found

    def add_trajectories(self, trajectories: Sequence[Trajectory]) -> list[Trajectory]:
        """Insert trajectories; returns them with ids set."""
        _check_verdicts(trajectories)
        return self._add_all(trajectories)

    def trajectories(
        self,
        run_id: str,
        role: str | None = None,
        round: int | None = None,
        verdict: str | None = None,
        stage: str | None = None,
    ) -> list[Trajectory]:
        """A run's trajectories in insertion order, optionally filtered (in SQL).

        Args:
            run_id: The run.
            role: Only this role's.
            round: Only this round's.
            verdict: Only those with this verdict.
            stage: Only those the scheme wrote in this stage (``Trajectory.stage``).
        """
        return self._rows(Trajectory, run_id, role=role, round=round, verdict=verdict, stage=stage)

    def add_pairs(self, pairs: Sequence[PreferencePair]) -> list[PreferencePair]:
        """Insert preference pairs; returns them with ids set."""
        return self._add_all(pairs)

    def pairs(self, run_id: str, round: int | None = None) -> list[PreferencePair]:
        """A run's preference pairs in insertion order, optionally of one round."""
        return self._rows(PreferencePair, run_id, round=round)

    # Model checkpoints

    def register_checkpoint(
        self,
        run_id: str,
        role: str,
        round: int,
        base_model: str,
        adapter_path: str | Path,
        parent_id: int | None = None,
        kind: str = "lora",
        metrics: dict[str, Any] | None = None,
    ) -> ModelCheckpoint:
        """Record trained weights; ``parent_id`` is the checkpoint they were trained from."""
        if kind not in CHECKPOINT_KINDS:
            raise ValueError(f"Checkpoint kind must be one of {CHECKPOINT_KINDS}, got {kind!r}.")
        checkpoint = ModelCheckpoint(
            run_id=run_id,
            role=role,
            round=round,
            base_model=base_model,
            adapter_path=str(adapter_path),
            parent_id=parent_id,
            kind=kind,
            metrics=dict(metrics or {}),
        )
        with self.session(write=True) as session:
            self._require_run(session, run_id)
            if parent_id is not None and session.get(ModelCheckpoint, parent_id) is None:
                raise StoreError(f"No model checkpoint {parent_id} to use as parent.")
            session.add(checkpoint)
        return checkpoint

    def checkpoints(self, run_id: str, role: str | None = None) -> list[ModelCheckpoint]:
        """A run's checkpoints in registration order, optionally of one role."""
        return self._rows(ModelCheckpoint, run_id, role=role)

    def latest_checkpoint(self, run_id: str, role: str) -> ModelCheckpoint | None:
        """The checkpoint of ``role`` from the latest round, or None before any training."""
        query = (
            select(ModelCheckpoint)
            .where(ModelCheckpoint.run_id == run_id, ModelCheckpoint.role == role)
            .order_by(col(ModelCheckpoint.round).desc(), col(ModelCheckpoint.id).desc())
        )
        with self.session() as session:
            return session.exec(query).first()

    def checkpoint_lineage(self, checkpoint_id: int) -> list[ModelCheckpoint]:
        """The chain of checkpoints from the root ancestor down to ``checkpoint_id``."""
        chain: list[ModelCheckpoint] = []
        seen: set[int] = set()
        next_id: int | None = checkpoint_id
        with self.session() as session:
            while next_id is not None and next_id not in seen:
                checkpoint = session.get(ModelCheckpoint, next_id)
                if checkpoint is None:
                    raise StoreError(f"No model checkpoint {next_id} in this store.")
                seen.add(next_id)
                chain.append(checkpoint)
                next_id = checkpoint.parent_id
        return chain[::-1]

    # Ledger

    def record_call(
        self,
        model: str,
        *,
        run_id: str | None = None,
        role: str | None = None,
        requests: int = 1,
        samples: int = 0,
        cached_samples: int = 0,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        latency_s: float = 0.0,
        retries: int = 0,
    ) -> CallRecord:
        """Append one line to the ledger."""
        record = CallRecord(
            run_id=run_id,
            role=role,
            model=model,
            requests=requests,
            samples=samples,
            cached_samples=cached_samples,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            retries=retries,
            latency_s=latency_s,
        )
        with self.session(write=True) as session:
            session.add(record)
        return record

    def usage(self, run_id: str) -> dict[tuple[str | None, str], Usage]:
        """Ledger totals of a run per ``(role, model)``."""
        # Every Usage field but ``calls`` is the sum of the ledger column of the same name.
        sums = [func.sum(getattr(CallRecord, f.name)) for f in fields(Usage) if f.name != "calls"]
        query = (
            select(CallRecord.role, CallRecord.model, func.count(), *sums)
            .where(CallRecord.run_id == run_id)
            .group_by(CallRecord.role, CallRecord.model)
        )
        with self.session() as session:
            rows = session.exec(query).all()
        return {
            (role, model): Usage(*(int(v or 0) for v in totals[:-1]), float(totals[-1] or 0.0))
            for role, model, *totals in rows
        }

    # Response cache

    def cache_get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Cached completion dicts for those of ``keys`` that are present."""
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        with self.session() as session:
            for chunk in _chunks(unique):
                query = select(CacheEntry.key, CacheEntry.completion).where(
                    col(CacheEntry.key).in_(chunk)
                )
                found.update(session.exec(query).all())
        return found

    def cache_put_many(self, entries: Mapping[str, tuple[str, dict[str, Any]]]) -> None:
        """Store ``{key: (model, completion_dict)}``; keys already present are left as they are.

        Safe with concurrent writers: a key another writer stored first is skipped, not an error.
        """
        if not entries:
            return
        now = utcnow()
        rows = [
            {"key": key, "model": model, "completion": completion, "created_at": now}
            for key, (model, completion) in entries.items()
        ]
        table = CacheEntry.__table__  # type: ignore[attr-defined]
        if self.dialect in ("sqlite", "postgresql"):
            make = sqlite_insert if self.dialect == "sqlite" else postgresql_insert
            statement = make(table).on_conflict_do_nothing(index_elements=["key"])
            with self.session(write=True) as session:
                session.connection().execute(statement, rows)
            return
        # Other backends: insert what is missing, one row at a time on a conflict race.
        present = self.cache_get_many([row["key"] for row in rows])
        for row in (r for r in rows if r["key"] not in present):
            try:
                with self.session(write=True) as session:
                    session.connection().execute(insert(table), [row])
            except IntegrityError:
                logger.debug("cache key %s was stored concurrently", row["key"])
