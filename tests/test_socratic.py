"""Socratic co-evolution orchestration on scripted roles, with real (tiny-model) training."""

from __future__ import annotations

from pathlib import Path

import pytest
from socratic_world import ScriptedRole, write_seeds

from agents.config import SocraticJob
from agents.schemes.socratic import SocraticLoop
from agents.store import Store, Workspace


def tiny_config(tmp_path: Path, model: Path, **overrides: object) -> SocraticJob:
    seeds = write_seeds(tmp_path / "seeds.jsonl", ["[m]", "[l]", "[h]", "[u]", "[l]", "[m]"])
    heldout = write_seeds(tmp_path / "heldout.jsonl", ["[m]", "[h]"])
    data = {
        "solver": str(model),
        "generator": str(model),
        "teacher": "scripted:teacher",
        "rounds": 2,
        "seeds": {"source": str(seeds), "heldout_data": str(heldout), "count": 6},
        "solve": {"samples": 4, "temperature": 0.8, "max_tokens": 32},
        "eval": {"samples": 2, "temperature": 0.7, "max_tokens": 32},
        "utility": {"samples": 4},
        "warmup": {"max_steps": 2, "batch_size": 2, "max_length": 128},
        "solver_training": {"max_steps": 2, "batch_size": 2, "max_length": 128},
        "generator_training": {"max_steps": 2, "batch_size": 2, "max_length": 128},
        **overrides,
    }
    return SocraticJob.model_validate(data)


@pytest.fixture
def world() -> dict[str, ScriptedRole]:
    return {role: ScriptedRole(role) for role in ("teacher", "solver", "generator")}


def open_loop(tmp_path: Path, config: SocraticJob, world: dict[str, ScriptedRole]) -> SocraticLoop:
    workspace = Workspace.resolve(tmp_path / "ws")
    store = Store.open(workspace)
    return SocraticLoop.create(
        config, workspace, store, progress=False, loader=lambda role: world[role]
    )


def test_full_loop_runs_every_stage(tmp_path: Path, tiny_model_dir: Path, world) -> None:
    loop = open_loop(tmp_path, tiny_config(tmp_path, tiny_model_dir), world)
    run = loop.run()
    assert run.status == "finished"
    stages = {(s.round, s.name): s for s in loop.store.stages(loop.run_id)}
    assert all(s.status == "finished" for s in stages.values())
    zones = stages[(1, "zones")].metrics
    assert (zones["mastered"], zones["learning"], zones["too_hard"]) == (2, 2, 2)
    verify = stages[(1, "verify")].metrics
    assert verify["unverifiable"] == 0 and verify["judged"] == 4
    print({k: v.metrics for k, v in stages.items()})
    scores = loop.scores()
    assert set(scores) == {"base", 0, 1, 2}
    loop.close()
