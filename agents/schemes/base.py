"""What every scheme shares: the :class:`Scheme` record, atomic resumable stages, the run lifecycle.

A scheme is one package under ``agents/schemes/`` (config, graph, rules, prompts, report section)
whose ``__init__`` exports one :class:`Scheme` record; ``agents/jobs.py`` lists them. The command
line, the report and the export read that record and name no scheme themselves.

A scheme is a LangGraph graph whose nodes are *stages*. :func:`stage_node` turns a function
``work(state, context, round) -> StageOutput`` into a node that

* skips work the store already marks finished for this (round, stage) — the process died after
  committing the stage but before LangGraph wrote its checkpoint — replaying its state update;
* otherwise runs it and writes every new row, every updated row and the ``finished`` mark in one
  transaction (:meth:`agents.store.Store.commit_stage`), so a stage that dies leaves nothing.

:class:`CheckpointedGraph` compiles a graph with LangGraph's SQLite saver and checkpoints after
every node before the next one starts, so ``kill -9`` at any point loses at most the running stage,
whose model calls then come back from the response cache.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel
from tqdm.auto import tqdm

from agents.config import ConfigError
from agents.memory import PeakMemory, release_freed_memory
from agents.models import check_reachable, endpoint_url, load_engine, resolve_local_model
from agents.models.base import ChatRequest, Engine
from agents.models.cached import CachedEngine
from agents.reporting import ReportSection
from agents.store import HEARTBEAT_S, ModelCheckpoint, Run, Store, Workspace

log = logging.getLogger(__name__)


class SchemeContext(Protocol):
    """What stage nodes need from a scheme's runtime context."""

    store: Store
    workspace: Workspace
    run_id: str
    progress: bool


@dataclass
class RoleContext:
    """A scheme's runtime context: its config, the store, and one engine per role.

    A role's engine is opened on first use from the config attribute of the same name (the
    model spec) and the ``engine`` options for that role, behind the response cache and ledger.
    """

    config: Any
    store: Store
    workspace: Workspace
    run_id: str
    progress: bool = True
    engines: dict[str, CachedEngine] = field(default_factory=dict)
    loader: Callable[[str], Engine] | None = None  # role -> engine; tests inject scripted ones

    def engine(self, role: str) -> CachedEngine:
        if role not in self.engines:
            spec = getattr(self.config, role)
            options = (getattr(self.config, "engine", None) or {}).get(role, {})
            inner = self.loader(role) if self.loader else load_engine(spec, **options)
            self.engines[role] = CachedEngine(inner, self.store, run_id=self.run_id, role=role)
        return self.engines[role]

    def with_adapter(self, role: str, adapter: str | None) -> CachedEngine:
        """The role's engine with ``adapter`` loaded (a no-op when it already is)."""
        engine = self.engine(role)
        current = getattr(engine.inner, "adapter", None)
        if (str(current) if current else None) != adapter:
            engine.set_adapter(adapter)
        return engine

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()
        self.engines.clear()


@dataclass
class StageOutput:
    """What a stage produced: metrics, the state update, and rows to write with its mark."""

    metrics: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    add: list[SQLModel] = field(default_factory=list)
    update: list[SQLModel] = field(default_factory=list)


StageWork = Callable[[Any, Any, int], StageOutput]


def stage_node(name: str, work: StageWork, *, opens_round: bool = False) -> Callable[..., dict]:
    """A graph node running ``work`` once per (round, stage), committed atomically.

    Args:
        name: Stage name in the store (and in reports).
        work: ``work(state, context, round) -> StageOutput``.
        opens_round: The stage starts round ``state["round"] + 1`` and sets it in the state.
    """

    def node(state: dict[str, Any], runtime: Runtime[SchemeContext]) -> dict[str, Any]:
        ctx = runtime.context
        rnd = state.get("round", 0) + (1 if opens_round else 0)
        done = ctx.store.stage(ctx.run_id, rnd, name)
        if done is not None and done.status == "finished":
            log.info("round %d %s already finished; replaying its result", rnd, name)
            return dict(done.metrics.get("_state") or {})
        ctx.store.start_stage(ctx.run_id, rnd, name)
        began = time.perf_counter()
        with PeakMemory() as memory:
            out = work(state, ctx, rnd)
            release_freed_memory()  # the next stage starts from what is still in use
        if opens_round:
            out.state["round"] = rnd
        metrics = {**out.metrics, "seconds": round(time.perf_counter() - began, 2)}
        metrics["peak_rss_gb"] = round(memory.gb, 2)  # this process and the servers it started
        metrics["_state"] = out.state  # what a resumed run replays; hidden from reports
        ctx.store.commit_stage(ctx.run_id, rnd, name, metrics, add=out.add, update=out.update)
        log.info("round %d %s: %s", rnd, name, {k: v for k, v in metrics.items() if k[0] != "_"})
        return out.state

    node.__name__ = name
    node.__doc__ = work.__doc__
    return node


def add_stage_chain(
    graph: StateGraph, start: str, stages: list[tuple[str, StageWork]], end: str
) -> None:
    """Add ``stages`` as nodes that run one after another, from ``start`` on and into ``end``."""
    names = [name for name, _ in stages]
    for name, work in stages:
        graph.add_node(name, stage_node(name, work))
    for before, after in zip([start, *names], [*names, end], strict=True):
        graph.add_edge(before, after)


def ask_parsed(
    engine: Engine,
    requests: list[ChatRequest],
    parse: Callable[[str], Any],
    retries: int,
    progress: bool,
) -> tuple[list[Any], list[str], int]:
    """Ask, then re-ask (with the next seed) the requests whose reply ``parse`` rejects (None).

    Returns each request's parsed value (None when still malformed after ``retries`` re-asks),
    its last raw reply, and how many re-asks were made.
    """
    parsed: list[Any] = [None] * len(requests)
    raws = [""] * len(requests)
    todo, asked_again = list(range(len(requests))), 0
    for attempt in range(retries + 1):
        if not todo:
            break
        asked_again += len(todo) if attempt else 0
        batch = [replace(requests[i], seed=(requests[i].seed or 0) + attempt) for i in todo]
        for i, result in zip(todo, engine.generate(batch, progress=progress), strict=True):
            raws[i], parsed[i] = result.text, parse(result.text)
        todo = [i for i in todo if parsed[i] is None]
    return parsed, raws, asked_again


def train_role(
    ctx: SchemeContext,
    role: str,
    rnd: int,
    rows: list[dict[str, Any]],
    *,
    base: str,
    method: Literal["sft", "dpo"],
    settings: Any,
    lora: Any,
    previous: str | None,
    system_prompt: str | None = None,
) -> StageOutput:
    """Train a role's LoRA adapter for round ``rnd`` and register it as a checkpoint.

    Training continues from ``previous`` (the role's last adapter) when given, which is also the
    checkpoint's parent, so the lineage of every round's adapter stays in the store.

    Returns:
        Metrics (examples, steps, first/last loss, DPO reward accuracy/margin), the state update
        ``{"<role>_adapter": path}`` and the checkpoint row to commit with the stage.
    """
    from agents.training.dpo import train_dpo
    from agents.training.sft import train_sft

    out_dir = ctx.workspace.adapter_dir(ctx.run_id, role, rnd)
    result = (train_dpo if method == "dpo" else train_sft)(
        resolve_local_model(base),
        rows,
        out_dir,
        settings=settings,
        lora=lora,
        init_adapter=Path(previous) if previous else None,
        progress=ctx.progress,
    )
    metrics: dict[str, Any] = {
        "examples": result.num_examples,
        "steps": result.steps,
        "first_loss": result.losses[0] if result.losses else None,
        "last_loss": result.losses[-1] if result.losses else None,
        "train_seconds": round(result.seconds, 2),
        # TRL's own summary (train_loss, train_runtime, samples per second, epoch, ...)
        **{k: v for k, v in result.metrics.items() if isinstance(v, int | float)},
    }
    # DPO: share of pairs ranked right by the implicit reward, and its margin, at the end.
    for key, name in (
        ("rewards/accuracies", "reward_accuracy"),
        ("rewards/margins", "reward_margin"),
    ):
        if result.metrics.get(key):
            metrics[name] = result.metrics[key][-1]
    parent = next(
        (c for c in ctx.store.checkpoints(ctx.run_id, role=role) if c.adapter_path == previous),
        None,
    )
    checkpoint = ModelCheckpoint(
        run_id=ctx.run_id,
        role=role,
        round=rnd,
        base_model=base,
        adapter_path=str(out_dir),
        parent_id=parent.id if parent else None,
        metrics={**metrics, "system_prompt": system_prompt},
    )
    return StageOutput(metrics, {f"{role}_adapter": str(out_dir)}, add=[checkpoint])


@contextlib.contextmanager
def run_log(path: Path) -> Iterator[None]:
    """While a run runs, append this package's warnings and every training step (the
    ``agents.steps`` log, which never reaches the console) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger("agents"), logging.getLogger("agents.steps")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        handler.close()


class Heartbeat:
    """A daemon thread noting every :data:`HEARTBEAT_S` seconds that a run's process is alive,
    so ``agents runs list`` can tell a run that is running from one whose process died."""

    def __init__(self, store: Store, run_id: str, every_s: float = HEARTBEAT_S) -> None:
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, args=(store, run_id, every_s), name="heartbeat", daemon=True
        )
        self._thread.start()

    def _beat(self, store: Store, run_id: str, every_s: float) -> None:
        while not self._stopped.wait(every_s):
            try:
                store.heartbeat(run_id)
            except Exception as err:  # a busy or lost database must not stop the run
                log.warning("heartbeat of run %s not stored: %s", run_id, err)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)


_CHECKPOINT_LOCK = 0x61676E74  # an advisory lock key of this package's own ("agnt")


def open_checkpointer(store: Store, workspace: Workspace) -> tuple[Any, Any]:
    """(connection, LangGraph saver) beside the store: in the same PostgreSQL database when the
    store is there (LangGraph's Postgres saver, its own tables), else the workspace's SQLite
    checkpoint file."""
    if store.dialect == "postgresql":
        try:
            import psycopg
            from langgraph.checkpoint.postgres import PostgresSaver
            from psycopg.rows import dict_row
        except ImportError as err:
            raise ConfigError(
                f"checkpoints in PostgreSQL need {err.name}; pip install 'agents-distill[postgres]'"
            ) from None
        url = make_url(store.url).set(drivername="postgresql")
        connection = psycopg.connect(
            url.render_as_string(hide_password=False),
            autocommit=True,
            prepare_threshold=0,
            row_factory=dict_row,
        )
        saver = PostgresSaver(connection)  # type: ignore[arg-type]
        # Creates or migrates its tables; one process at a time (two runs may start together).
        connection.execute("SELECT pg_advisory_lock(%s)", (_CHECKPOINT_LOCK,))
        try:
            saver.setup()
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (_CHECKPOINT_LOCK,))
        return connection, saver
    connection = sqlite3.connect(str(workspace.checkpoints_path), check_same_thread=False)
    return connection, SqliteSaver(connection)


class CheckpointedGraph:
    """A compiled scheme graph bound to one run: start, stop early, resume, finish.

    Args:
        graph: The scheme's uncompiled graph.
        context: Runtime context handed to every node (has ``store`` and ``run_id``).
        workspace: Holds the LangGraph checkpoint database.
        total_stages: Expected number of stages, for the progress bar.
        progress: Show a progress bar over stages.
    """

    def __init__(
        self,
        graph: StateGraph,
        context: SchemeContext,
        workspace: Workspace,
        *,
        total_stages: int | None = None,
        progress: bool = True,
    ) -> None:
        self.context = context
        self.store = context.store
        self.run_id = context.run_id
        self.total_stages = total_stages
        self.progress = progress
        self._connection, saver = open_checkpointer(self.store, workspace)
        self.graph = graph.compile(checkpointer=saver)
        self.thread = {"configurable": {"thread_id": f"run-{self.run_id}"}}

    def state(self) -> dict[str, Any]:
        """The graph state at the last checkpoint."""
        return dict(self.graph.get_state(self.thread).values)

    @property
    def pending(self) -> tuple[str, ...]:
        """The nodes the graph runs next (empty before the start and after the end)."""
        return tuple(self.graph.get_state(self.thread).next)

    @property
    def finished(self) -> bool:
        snapshot = self.graph.get_state(self.thread)
        # A checkpoint exists (even for a graph whose stages leave the state empty) and no node
        # is left to run.
        return snapshot.created_at is not None and not snapshot.next

    def advance(self, stop: Callable[[str, dict[str, Any]], bool] | None = None) -> Run:
        """Run (or resume) until the graph ends or ``stop(node, state)`` after a node says so.

        The run's status is ``running`` meanwhile, then ``finished``, ``paused`` (stopped early
        or by Ctrl-C) or ``failed`` (an exception, re-raised).
        """
        snapshot = self.graph.get_state(self.thread)
        started = snapshot.created_at is not None
        if started and not snapshot.next:
            return self.store.get_run(self.run_id)
        self.store.set_run_status(self.run_id, "running")
        heartbeat = Heartbeat(self.store, self.run_id)
        done_before = sum(s.status == "finished" for s in self.store.stages(self.run_id))
        bar = tqdm(
            total=self.total_stages,
            initial=done_before,
            desc=f"run {self.run_id}",
            unit="stage",
            disable=not self.progress,
        )
        try:
            updates = self.graph.stream(
                None if started else {},
                self.thread,
                context=self.context,
                durability="sync",  # checkpoint before the next node starts: kill -9 safe
                stream_mode="updates",
            )
            began = time.perf_counter()
            for update in updates:
                node = next(iter(update))
                bar.update(1)
                bar.set_postfix_str(node)
                if self.progress:  # one line per finished stage above the bar
                    now = time.perf_counter()
                    rnd = self.state().get("round", 0)
                    bar.write(f"  round {rnd} {node}: done in {now - began:.1f} s", file=sys.stderr)
                    began = now
                if stop is not None and stop(node, self.state()):
                    break
        except KeyboardInterrupt:
            self.store.set_run_status(self.run_id, "paused")  # stopped by the user, resumable
            raise
        except BaseException:
            self.store.set_run_status(self.run_id, "failed")
            raise
        finally:
            heartbeat.stop()
            bar.close()
        self.store.set_run_status(self.run_id, "finished" if self.finished else "paused")
        return self.store.get_run(self.run_id)

    def close(self) -> None:
        self._connection.close()


def _model_specs(config: Any) -> list[str]:
    """Every HTTP model spec anywhere in a config (roles, judges, simulators), once each."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for inner in value.values():
                walk(inner)
        elif isinstance(value, list | tuple):
            for inner in value:
                walk(inner)
        elif isinstance(value, str) and endpoint_url(value) is not None and value not in found:
            found.append(value)

    walk(config.model_dump(mode="json") if isinstance(config, BaseModel) else config)
    return found


class SchemeRun:
    """One stored run of a scheme: create or resume it, run its graph, report, close.

    A scheme subclasses it, names itself (``scheme``, ``job``, ``trained_roles``) and builds its
    context and graph in :meth:`_build`; :meth:`check` may reject a config before a run exists.
    """

    scheme: ClassVar[str]  # the run's scheme name in the store, e.g. "socratic"
    job: ClassVar[Any]  # the pydantic config model
    trained_roles: ClassVar[tuple[str, ...]] = ()  # roles whose weights are trained
    report_section: ClassVar[ReportSection | None] = None  # the scheme's part of the report

    def __init__(
        self, config: Any, store: Store, workspace: Workspace, run_id: str, **options: Any
    ) -> None:
        self.config = config
        self.store = store
        self.workspace = workspace.ensure()
        self.run_id = run_id
        progress = options.get("progress", True)
        self.context, graph, stages = self._build(**options)
        self.checkpointed = CheckpointedGraph(
            graph, self.context, self.workspace, total_stages=stages, progress=progress
        )
        self.graph = self.checkpointed.graph  # the compiled LangGraph graph

    def _build(self, **options: Any) -> tuple[Any, StateGraph, int]:
        """(runtime context, uncompiled graph, expected number of stages)."""
        raise NotImplementedError

    @classmethod
    def trained(cls, config: Any) -> dict[str, str]:
        """The model spec of every role whose weights the run trains, by role."""
        return {role: getattr(config, role) for role in cls.trained_roles}

    @classmethod
    def check(cls, config: Any) -> None:
        """Raise :class:`ConfigError` for a config that cannot run (e.g. a bad task file)."""

    @classmethod
    def create(
        cls,
        config: Any,
        workspace: Workspace | None = None,
        store: Store | None = None,
        **options: Any,
    ) -> Any:
        """Validate the config, then open a new run."""
        workspace = (workspace or Workspace.resolve()).ensure()
        store = store or Store.open(workspace)
        if options.get("loader") is None:
            for role, spec in cls.trained(config).items():
                # Trained roles must be local weights; fail before storing anything.
                try:
                    resolve_local_model(spec)
                except Exception as err:
                    raise ConfigError(
                        f"the {role} is trained, so it must be a local model (builtin:, hf: or "
                        f"a directory): {err}"
                    ) from None
            for spec in _model_specs(config):
                check_reachable(spec)  # an endpoint that is down fails before a run row exists
        cls.check(config)
        name = getattr(config, "name", None)
        run = store.create_run(cls.scheme, config.model_dump(mode="json"), name=name)
        return cls(config, store, workspace, run.id, **options)

    @classmethod
    def resume(
        cls,
        run_id: str,
        workspace: Workspace | None = None,
        store: Store | None = None,
        **options: Any,
    ) -> Any:
        """Reopen a stored run with the config it was started with."""
        workspace = (workspace or Workspace.resolve()).ensure()
        store = store or Store.open(workspace)
        run = store.get_run(run_id)
        if run.scheme != cls.scheme:
            article = "an" if cls.scheme[0] in "aeiou" else "a"
            raise ConfigError(f"run {run_id} is a {run.scheme} run, not {article} {cls.scheme} one")
        return cls(cls.job.model_validate(run.config), store, workspace, run.id, **options)

    def run(self) -> Run:
        """Run to the end, or resume where the run stopped; the report is written either way.

        Schemes may offer ways to stop early (``run(rounds=1)``, ``run(until="filter")``).
        """
        return self._run_graph(None)

    def _run_until(self, until: str | None, stages: Sequence[str]) -> Run:
        """Run to the end, or pause after the first stage named ``until`` (one of ``stages``,
        else a :class:`ConfigError` listing them)."""
        if until is not None and until not in stages:
            raise ConfigError(f"unknown stage {until!r}; stages: {', '.join(stages)}")
        return self._run_graph(lambda node, _state: node == until)

    def _run_graph(self, stop: Callable[[str, dict[str, Any]], bool] | None) -> Run:
        """Run the graph until ``stop`` says so; the report is written however it ends."""
        try:
            with run_log(self.workspace.reports_dir / self.run_id / "run.log"):
                return self.checkpointed.advance(stop)
        finally:
            self.report()

    def report(self) -> Path:
        """Write the run report (markdown + PNG) under ``reports/RUN_ID``; returns the markdown."""
        from agents.report import write_report

        out_dir = self.workspace.reports_dir / self.run_id
        return write_report(self.store, self.run_id, out_dir, self.report_section).markdown

    def close(self) -> None:
        self.context.close()
        self.checkpointed.close()


@dataclass(frozen=True)
class Scheme:
    """One runnable scheme, as the command line, the report and the export see it.

    The name, the config model and the report section are the run class's own (its ``scheme``,
    ``job`` and ``report_section``), so they are written once.

    Attributes:
        run: The :class:`SchemeRun` subclass that creates, resumes and runs a stored run.
        help: One line for ``agents run --help``.
        export_roles: Roles whose trained adapters ``agents export`` can export, the default
            first; empty when the scheme trains no weights; None for "whichever role the run
            trained" (one-stage fine-tuning, whose role is a setting).
        demonstrations: Worked examples written into an exported agent's card (agents that run
            tools are shown them before every task).
        summary: ``summary(store, run) -> str``: one line ``agents run`` prints when the run
            finishes, before the stage list.
        chat: ``chat(model, workspace, user) -> exit code``: ``agents chat NAME``, talking to the
            scheme's agent in the terminal (``model``: a spec or an export directory).
        export_card: ``export_card(store, run) -> dict``: the agent card's fields for an agent
            exported from a run of a scheme that trains no weights (its base model and what the
            run learnt, e.g. the audited strategies).
    """

    run: type[SchemeRun]
    help: str
    export_roles: tuple[str, ...] | None = ()
    demonstrations: Callable[[], list[dict[str, Any]]] | None = None
    summary: Callable[[Store, Run], str] | None = None
    chat: Callable[[str | None, Workspace, str | None], int] | None = None
    export_card: Callable[[Store, Run], dict[str, Any]] | None = None

    @property
    def name(self) -> str:
        """``agents run NAME``; also the run's scheme in the store."""
        return self.run.scheme

    @property
    def config(self) -> type[BaseModel]:
        """The pydantic model of ``configs/<name>.yaml``.

        Its scalar top-level fields become command-line flags (``--field-name``), as do the dotted
        keys of its ``FLAGS`` class attribute (``{"seeds": "seeds.count"}``); a flag's help is
        the field's description.
        """
        return self.run.job

    @property
    def report(self) -> ReportSection | None:
        return self.run.report_section

    @property
    def default_config(self) -> Path | None:
        """``configs/<name>.yaml`` (dashes as underscores) shipped with the project, if present."""
        from agents.config import CONFIG_DIR

        path = CONFIG_DIR / f"{self.name.replace('-', '_')}.yaml"
        return path if path.exists() else None
