"""Helpers of the Socratic orchestration tests: configs over scripted seeds, opening and resuming
loops, and reading back what a run stored."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from socratic_world import ScriptedRole, write_seeds

from agents.models.base import ChatRequest
from agents.schemes.socratic import SocraticJob, SocraticLoop
from agents.store import Item, Store, Workspace

ROLES = ("teacher", "solver", "generator")
TRAINING = {"max_steps": 1, "batch_size": 2, "max_length": 128}


def make_config(
    tmp_path: Path,
    model: Path,
    tags: list[str],
    warmup_tags: tuple[str, ...] = (),
    **overrides: Any,
) -> SocraticJob:
    """A config over scripted seeds with these tags, then a warm-up pool with ``warmup_tags``;
    training (when it happens) is one step."""
    seeds = write_seeds(tmp_path / "seeds.jsonl", [*tags, *warmup_tags])
    heldout = write_seeds(tmp_path / "heldout.jsonl", ["[m]", "[h]"], start=100)
    data: dict[str, Any] = {
        "solver": str(model),
        "generator": str(model),
        "teacher": "scripted:teacher",
        "rounds": 1,
        "seeds": {
            "source": str(seeds),
            "heldout_data": str(heldout),
            "count": len(tags),
            "warmup_pool": len(warmup_tags),
        },
        "solve": {"samples": 4, "temperature": 0.8, "max_tokens": 32},
        "eval": {"samples": 2, "temperature": 0.7, "max_tokens": 32},
        "utility": {"samples": 4},
        "warmup": None,
        # The scripted seeds' tags fix each question's zone; the seed filter has its own tests.
        "calibrate": {"enabled": False},
        "solver_training": TRAINING,
        "generator_training": TRAINING,
        **overrides,
    }
    return SocraticJob.model_validate(data)


def new_world(**teacher: Any) -> dict[str, ScriptedRole]:
    return {role: ScriptedRole(role, **(teacher if role == "teacher" else {})) for role in ROLES}


def open_loop(
    root: Path, config: SocraticJob, world: dict[str, ScriptedRole], store: Store | None = None
) -> SocraticLoop:
    workspace = Workspace.resolve(root / "ws")
    store = store or Store.open(workspace)
    return SocraticLoop.create(
        config, workspace, store, progress=False, loader=lambda role: world[role]
    )


def resume_loop(root: Path, run_id: str, world: dict[str, ScriptedRole]) -> SocraticLoop:
    """The run reopened as a new process would: a fresh store handle and fresh engines."""
    workspace = Workspace.resolve(root / "ws")
    return SocraticLoop.resume(
        run_id, workspace, Store.open(workspace), progress=False, loader=lambda role: world[role]
    )


def stage_metrics(loop: SocraticLoop) -> dict[tuple[int, str], dict[str, Any]]:
    return {(s.round, s.name): s.metrics for s in loop.store.stages(loop.run_id)}


def new_problems(loop: SocraticLoop, rnd: int = 1) -> list[Item]:
    return [
        i
        for i in loop.store.items(loop.run_id, round=rnd, kind="question")
        if i.parent_id is not None
    ]


def by_question(loop: SocraticLoop) -> dict[str, Item]:
    return {i.content["question"]: i for i in loop.store.items(loop.run_id, kind="question")}


def row_counts(loop: SocraticLoop) -> dict[str, Counter]:
    """Every row a run wrote, counted by what distinguishes it (ids and times left out)."""
    store, run_id = loop.store, loop.run_id
    return {
        "items": Counter(
            (i.round, i.kind, i.status, i.zone, i.content["question"], i.answer)
            for i in store.items(run_id)
        ),
        "trajectories": Counter(
            (t.round, t.role, t.stage, t.item_id, t.verdict, t.messages[-1]["content"])
            for t in store.trajectories(run_id)
        ),
        "pairs": Counter(
            (p.round, p.item_id, p.chosen[0]["content"], p.rejected[0]["content"])
            for p in store.pairs(run_id)
        ),
        "checkpoints": Counter((c.role, c.round) for c in store.checkpoints(run_id)),
        "stages": Counter((s.round, s.name, s.status) for s in store.stages(run_id)),
    }


def portable_counts(store: Store, run_id: str) -> dict[str, Counter]:
    """:func:`row_counts` with item ids replaced by question texts, so a run that shared its
    database (and so the id sequence) with another compares with a run that had one alone."""
    from types import SimpleNamespace

    counts = row_counts(SimpleNamespace(store=store, run_id=run_id))  # type: ignore[arg-type]
    question = {i.id: i.content["question"] for i in store.items(run_id)}
    for table, position in (("trajectories", 3), ("pairs", 1)):
        counts[table] = Counter(
            {
                (*key[:position], question.get(key[position]), *key[position + 1 :]): n
                for key, n in counts[table].items()
            }
        )
    return counts


def solve_requests(role: ScriptedRole, config: SocraticJob, rnd: int) -> list[ChatRequest]:
    """The Solver's requests of the solve stage of round ``rnd`` (not eval, not utility)."""
    return [
        r
        for r in role.requests_of("solve")
        if r.seed == config.seed + rnd
        and r.temperature == config.solve.temperature
        and r.n == config.solve.samples
        and "A shop counts" not in r.messages[-1]["content"]
    ]
