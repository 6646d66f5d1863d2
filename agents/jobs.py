"""Jobs the CLI and Python users run: fine-tuning on a dataset, and held-out evaluation.

Each job opens a run in the store, does its work in named stages, registers what it produced
(adapters, scores) and marks the run finished or failed. Schemes with many stages live in
``agents/schemes``; they are registered in :data:`RUNNERS` the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agents.config import (
    AgentDistillJob,
    ConfigError,
    DPOJob,
    EvalJob,
    FinetuneJob,
    SFTJob,
    SocraticJob,
    StrategyTeachingJob,
)
from agents.datasets import read_jsonl
from agents.eval.heldout import evaluate, read_eval_items
from agents.models import load_engine, resolve_local_model
from agents.models.cached import CachedEngine
from agents.schemes.agent_distill import run_agent_distill
from agents.schemes.socratic import run_socratic
from agents.schemes.strategy_teaching import run_strategy_teaching
from agents.store import Run, Store, Trajectory, Workspace

log = logging.getLogger(__name__)


def _read_rows(path: Path | None, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of a JSONL dataset, checked for the fields a job needs before anything is stored."""
    if path is None:
        raise ConfigError(
            "no training data given; pass --data FILE.jsonl or set data: in the config"
        )
    if not Path(path).exists():
        raise ConfigError(f"training data {path} does not exist")
    try:
        rows = read_jsonl(Path(path))
    except ValueError as err:
        raise ConfigError(f"{path} is not valid JSONL: {err}") from None
    if not rows:
        raise ConfigError(f"{path} holds no rows")
    for number, row in enumerate(rows, start=1):
        missing = [key for key in required if not row.get(key)]
        if missing:
            raise ConfigError(f"{path} row {number} lacks {', '.join(missing)}")
    return rows


def _tools_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        for tool in row.get("tools") or []:
            seen.setdefault(tool.get("function", {}).get("name", str(tool)), tool)
    return list(seen.values())


def _finetune(
    config: FinetuneJob,
    store: Store,
    workspace: Workspace,
    *,
    scheme: str,
    required: tuple[str, ...],
    train: Callable[..., Any],
    progress: bool,
) -> Run:
    rows = _read_rows(config.data, required)
    base_path = resolve_local_model(config.base)  # fail on an unknown model before storing
    run = store.create_run(scheme, config.model_dump(mode="json"), name=config.name)
    store.set_run_status(run.id, "running")
    try:
        store.start_stage(run.id, 0, "train")
        result = train(
            base_path,
            rows,
            workspace.adapter_dir(run.id, config.role, 0),
            settings=config.training,  # type: ignore[attr-defined]
            lora=config.lora,
            progress=progress,
        )
        metrics = {
            "examples": result.num_examples,
            "steps": result.steps,
            "seconds": result.seconds,
            "first_loss": result.losses[0] if result.losses else None,
            "last_loss": result.losses[-1] if result.losses else None,
            **{k: v for k, v in result.metrics.items() if isinstance(v, int | float)},
        }
        store.register_checkpoint(
            run.id,
            config.role,
            0,
            base_model=config.base,
            adapter_path=str(result.adapter_dir),
            metrics={**metrics, "tools": _tools_of(rows), "system_prompt": config.system_prompt},
        )
        store.finish_stage(run.id, 0, "train", metrics)
    except BaseException:
        store.set_run_status(run.id, "failed")
        raise
    store.set_run_status(run.id, "finished")
    return store.get_run(run.id)


def run_sft(config: SFTJob, store: Store, workspace: Workspace, *, progress: bool = True) -> Run:
    """LoRA SFT (assistant-only loss; weighted when rows carry ``weight``) on a JSONL dataset."""
    from agents.training.sft import train_sft

    return _finetune(
        config,
        store,
        workspace,
        scheme="sft",
        required=("messages",),
        train=train_sft,
        progress=progress,
    )


def run_dpo(config: DPOJob, store: Store, workspace: Workspace, *, progress: bool = True) -> Run:
    """LoRA DPO on a JSONL dataset of {prompt, chosen, rejected} rows."""
    from agents.training.dpo import train_dpo

    return _finetune(
        config,
        store,
        workspace,
        scheme="dpo",
        required=("prompt", "chosen", "rejected"),
        train=train_dpo,
        progress=progress,
    )


def run_eval(config: EvalJob, store: Store, workspace: Workspace, *, progress: bool = True) -> Run:
    """Accuracy of a model on JSONL {question, answer} items; each answer stored with a verdict."""
    if config.data is None:
        raise ConfigError("no evaluation data given; pass --data FILE.jsonl")
    try:
        items = read_eval_items(Path(config.data), limit=config.limit)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err)) from None
    engine = load_engine(config.model, adapter=config.adapter, **config.engine)
    run = store.create_run("eval", config.model_dump(mode="json"))
    store.set_run_status(run.id, "running")
    try:
        store.start_stage(run.id, 0, "eval")
        cached = CachedEngine(engine, store, run_id=run.id, role="model")
        report = evaluate(
            cached,
            items,
            system_prompt=config.system_prompt,
            samples=config.samples,
            temperature=config.temperature,
            top_p=config.top_p,
            max_tokens=config.max_tokens,
            progress=progress,
        )
        store.add_trajectories(
            [
                Trajectory(
                    run_id=run.id,
                    round=0,
                    role="model",
                    model=config.model,
                    messages=[*row["messages"], {"role": "assistant", "content": text}],
                    final_answer=predicted,
                    verdict="correct" if ok else "incorrect",
                    reward=float(ok),
                    meta={"item": row["id"], "reference": row["answer"]},
                )
                for row in report.per_item
                for text, predicted, ok in zip(
                    row["completions"], row["predicted"], row["correct"], strict=True
                )
            ]
        )
        store.finish_stage(run.id, 0, "eval", report.summary())
    except BaseException:
        store.set_run_status(run.id, "failed")
        raise
    finally:
        engine.close()
    store.set_run_status(run.id, "finished")
    return store.get_run(run.id)


@dataclass(frozen=True)
class Runner:
    """A runnable job: its config model, the function that runs it, whether it resumes."""

    config: type[BaseModel]
    run: Callable[..., Run]
    help: str
    resumable: bool = False


RUNNERS: dict[str, Runner] = {
    "sft": Runner(SFTJob, run_sft, "LoRA SFT on a JSONL of conversations (assistant-only loss)"),
    "dpo": Runner(DPOJob, run_dpo, "LoRA DPO on a JSONL of {prompt, chosen, rejected}"),
    "socratic": Runner(
        SocraticJob,
        run_socratic,
        "Socratic co-evolution: Teacher, DPO-trained Solver, weighted-SFT Generator",
        resumable=True,
    ),
    "agent-distill": Runner(
        AgentDistillJob,
        run_agent_distill,
        "Agent distillation: a teacher's tool-using trajectories fine-tune a small agent",
        resumable=True,
    ),
    "strategy-teaching": Runner(
        StrategyTeachingJob,
        run_strategy_teaching,
        "Strategy teaching: a teacher writes an auditable strategy library for a small student",
        resumable=True,
    ),
}
