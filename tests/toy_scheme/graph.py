"""The toy scheme's graph: ``answer`` → ``train``, each an atomic, resumable stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

import yaml
from langgraph.graph import END, START, StateGraph

from agents.datasets import sft_record
from agents.models.base import ChatRequest
from agents.schemes.base import RoleContext, SchemeRun, StageOutput, add_stage_chain, train_role
from agents.store import Trajectory
from toy_scheme.config import ToyJob
from toy_scheme.report import SECTION

PROMPTS: dict[str, str] = yaml.safe_load(Path(__file__).with_name("prompts.yaml").read_text())


class ToyState(TypedDict, total=False):
    student_adapter: str


def answer(state: ToyState, ctx: RoleContext, rnd: int) -> StageOutput:
    """The teacher answers every question once; the answers are stored as trajectories."""
    config: ToyJob = ctx.config
    conversations = [
        [
            {"role": "system", "content": PROMPTS["system"]},
            {"role": "user", "content": PROMPTS["question"].format(a=i, b=i + 1)},
        ]
        for i in range(config.questions)
    ]
    requests = [ChatRequest(messages=m, max_tokens=config.max_tokens) for m in conversations]
    results = ctx.engine("teacher").generate(requests, progress=False)
    rows = [
        Trajectory(
            run_id=ctx.run_id,
            round=rnd,
            role="teacher",
            model=config.teacher,
            messages=[*m, {"role": "assistant", "content": r.text or "..."}],
            meta={},
        )
        for m, r in zip(conversations, results, strict=True)
    ]
    return StageOutput({"answers": len(rows)}, add=rows)


def train(state: ToyState, ctx: RoleContext, rnd: int) -> StageOutput:
    """LoRA SFT of the student on the teacher's answers."""
    config: ToyJob = ctx.config
    if config.pause_marker is not None and config.pause_marker.exists():
        config.pause_marker.unlink()
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C once `answer` was committed
    records = [sft_record(t.messages) for t in ctx.store.trajectories(ctx.run_id, role="teacher")]
    return train_role(
        ctx,
        "student",
        rnd,
        records,
        base=config.student,
        method="sft",
        settings=config.training,
        lora=config.lora,
        previous=None,
        system_prompt=PROMPTS["system"],
    )


def build_graph() -> StateGraph:
    graph = StateGraph(ToyState, context_schema=RoleContext)
    add_stage_chain(graph, START, [("answer", answer), ("train", train)], END)
    return graph


class ToyDistillation(SchemeRun):
    """A toy run: create, run, resume."""

    scheme = "toy-distill"
    job = ToyJob
    trained_roles = ("student",)
    report_section = SECTION

    def _build(self, *, progress: bool = True, **_: Any) -> tuple[RoleContext, StateGraph, int]:
        context = RoleContext(self.config, self.store, self.workspace, self.run_id, progress)
        return context, build_graph(), 2
