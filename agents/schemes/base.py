"""What every scheme graph shares: atomic, resumable stages and a checkpointed graph runner.

A scheme is a LangGraph graph whose nodes are *stages*. :func:`stage_node` turns a function
``work(state, context, round) -> StageOutput`` into a node that

* skips work the store already marks finished for this (round, stage) — the process died after
  committing the stage but before LangGraph wrote its checkpoint — replaying its state update;
* otherwise runs it and writes every new row, every updated row and the ``finished`` mark in one
  transaction (:meth:`agents.store.Store.commit_stage`), so a stage that dies leaves nothing.

:class:`GraphRun` compiles a graph with LangGraph's SQLite saver and checkpoints after every
node before the next one starts, so ``kill -9`` at any point loses at most the running stage,
whose model calls then come back from the response cache.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import StateGraph
from langgraph.runtime import Runtime
from sqlmodel import SQLModel
from tqdm.auto import tqdm

from agents.models.base import ChatRequest, Engine
from agents.store import ModelCheckpoint, Run, Store, Workspace

log = logging.getLogger(__name__)


class SchemeContext(Protocol):
    """What stage nodes need from a scheme's runtime context."""

    store: Store
    workspace: Workspace
    run_id: str
    progress: bool


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
        out = work(state, ctx, rnd)
        if opens_round:
            out.state["round"] = rnd
        metrics = {**out.metrics, "seconds": round(time.perf_counter() - began, 2)}
        metrics["_state"] = out.state  # what a resumed run replays; hidden from reports
        ctx.store.commit_stage(ctx.run_id, rnd, name, metrics, add=out.add, update=out.update)
        log.info("round %d %s: %s", rnd, name, {k: v for k, v in metrics.items() if k[0] != "_"})
        return out.state

    node.__name__ = name
    node.__doc__ = work.__doc__
    return node


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
    from agents.models import resolve_local_model
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


class GraphRun:
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
        self._connection = sqlite3.connect(str(workspace.checkpoints_path), check_same_thread=False)
        self.graph = graph.compile(checkpointer=SqliteSaver(self._connection))
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
        return bool(snapshot.values) and not snapshot.next

    def run(self, stop: Callable[[str, dict[str, Any]], bool] | None = None) -> Run:
        """Run (or resume) until the graph ends or ``stop(node, state)`` after a node says so.

        The run's status is ``running`` meanwhile, then ``finished``, ``paused`` (stopped early
        or by Ctrl-C) or ``failed`` (an exception, re-raised).
        """
        snapshot = self.graph.get_state(self.thread)
        started = bool(snapshot.values) or bool(snapshot.next)
        if started and not snapshot.next:
            return self.store.get_run(self.run_id)
        self.store.set_run_status(self.run_id, "running")
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
            for update in updates:
                node = next(iter(update))
                bar.update(1)
                bar.set_postfix_str(node)
                if stop is not None and stop(node, self.state()):
                    break
        except KeyboardInterrupt:
            self.store.set_run_status(self.run_id, "paused")  # stopped by the user, resumable
            raise
        except BaseException:
            self.store.set_run_status(self.run_id, "failed")
            raise
        finally:
            bar.close()
        self.store.set_run_status(self.run_id, "finished" if self.finished else "paused")
        return self.store.get_run(self.run_id)

    def close(self) -> None:
        self._connection.close()
