"""Scripted agent-distillation runs for tests: a config with task files and tiny settings, the
scripted teacher and student, and runs created or resumed on them (see ``agent_world``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_world import FakeCorpus, ScriptedAgent, write_tasks

from agents.schemes.agent_distill import AgentDistillJob
from agents.schemes.agent_distill.graph import AgentDistillation
from agents.store import Store, Workspace

TRAINING = {"max_steps": 1, "batch_size": 4, "grad_accum": 1, "max_length": 2048}


def make_config(
    root: Path,
    model: Path,
    train: list[str],
    heldout: list[str],
    *,
    tasks: dict[str, Any] | None = None,
    **overrides: Any,
) -> AgentDistillJob:
    """A scripted run's config: ``train`` and ``heldout`` as task files, tiny settings;
    ``tasks`` adds task settings, ``overrides`` replaces top-level sections."""
    data: dict[str, Any] = {
        "teacher": "scripted:teacher",
        "student": str(model),
        "tasks": {
            "math": 0,
            "factual": 0,
            "heldout_math": 0,
            "heldout_factual": 0,
            "data": write_tasks(root / "train.jsonl", train),
            "heldout_data": write_tasks(root / "heldout.jsonl", heldout),
            **(tasks or {}),
        },
        "cot": {"max_tokens": 64},
        "teacher_agent": {"max_steps": 4, "max_tokens": 64, "sandbox_timeout": 5},
        "student_agent": {"max_steps": 4, "max_tokens": 64, "sandbox_timeout": 5},
        "self_consistency": {"candidates": 3, "temperature": 0.4},
        "judge": False,
        "training": TRAINING,
        **overrides,
    }
    return AgentDistillJob.model_validate(data)


def new_world(**teacher: Any) -> dict[str, ScriptedAgent]:
    return {"teacher": ScriptedAgent("teacher", **teacher), "student": ScriptedAgent("student")}


def open_run(
    root: Path, config: AgentDistillJob, world: dict[str, ScriptedAgent]
) -> AgentDistillation:
    workspace = Workspace.resolve(root / "ws")
    return AgentDistillation.create(
        config,
        workspace,
        Store.open(workspace),
        progress=False,
        loader=lambda role: world[role],
        corpus=FakeCorpus,
    )


def resume_run(root: Path, run_id: str, world: dict[str, ScriptedAgent]) -> AgentDistillation:
    """The run reopened as a new process would: a fresh store handle and fresh engines."""
    workspace = Workspace.resolve(root / "ws")
    return AgentDistillation.resume(
        run_id,
        workspace,
        Store.open(workspace),
        progress=False,
        loader=lambda role: world[role],
        corpus=FakeCorpus,
    )
