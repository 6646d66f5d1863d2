"""``agents eval`` / ``agents run eval``: held-out accuracy of a model on ``{question, answer}``.

One stage, ``eval``: every question is asked ``samples`` times, each answer is checked by rule and
stored as a trajectory with its verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from langgraph.graph import END, START, StateGraph
from pydantic import Field

from agents.config import ConfigError, StrictModel
from agents.eval.heldout import EvalItem, evaluate, read_eval_items
from agents.models import check_reachable, load_engine
from agents.models.base import Engine
from agents.models.cached import CachedEngine
from agents.reporting import ReportSection
from agents.schemes.base import (
    RoleContext,
    Scheme,
    SchemeRun,
    StageOutput,
    add_stage_chain,
)
from agents.store import Run, Store, Trajectory


class EvalJob(StrictModel):
    """Held-out evaluation of a model on JSONL {question, answer} items."""

    model: str = Field("builtin:smollm2-135m", description="model spec to evaluate")
    adapter: Path | None = Field(None, description="optional PEFT adapter for in-process models")
    engine: dict[str, Any] = Field(
        default_factory=dict,
        description="engine options (batch_size, device, max_concurrency, timeout_s, ...)",
    )
    data: Path | None = Field(None, description="JSONL with question and answer fields")
    samples: int = Field(1, ge=1, description="samples per question (accuracy = mean)")
    temperature: float = Field(0.0, ge=0.0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    max_tokens: int = Field(256, ge=1, description="tokens per answer")
    limit: int | None = Field(None, ge=1, description="evaluate only the first N items")
    system_prompt: str = Field(
        "Solve the problem step by step. Put the final answer in \\boxed{}.",
        description="system message used for every question",
    )
    name: str | None = Field(None, description="human-readable run name")


def read_items(config: EvalJob) -> list[EvalItem]:
    """The evaluation items of a config; a missing or malformed file is a :class:`ConfigError`."""
    if config.data is None:
        raise ConfigError("no evaluation data given; pass --data FILE.jsonl")
    try:
        return read_eval_items(Path(config.data), limit=config.limit)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err)) from None


def _section(view: Any) -> list[str]:
    from agents.reporting import DASH, num, section

    metrics = view.metrics(0, "eval")
    if metrics.get("accuracy") is None:
        return []
    model = view.run.config.get("model")
    row = ["evaluated model", f"`{model}`" if model else DASH, f"{metrics['accuracy']:.3f}"]
    row += [num(metrics.get("items")), num(metrics.get("samples"))]
    headers = ["checkpoint", "model", "accuracy", "items", "samples"]
    return section("Held-out accuracy", headers, [row])


class Evaluation(SchemeRun):
    """An evaluation run: one ``eval`` stage."""

    scheme = "eval"
    job = EvalJob
    report_section: ClassVar[ReportSection | None] = ReportSection(_section, stages=("eval",))

    def _build(
        self, *, progress: bool = True, loader: Callable[[str], Engine] | None = None
    ) -> tuple[RoleContext, StateGraph, int]:
        context = RoleContext(
            self.config, self.store, self.workspace, self.run_id, progress, loader=loader
        )
        graph = StateGraph(dict)
        add_stage_chain(graph, START, [("eval", self._eval)], END)
        return context, graph, 1

    @classmethod
    def check(cls, config: EvalJob) -> None:
        read_items(config)

    @classmethod
    def create(cls, config: EvalJob, *args: Any, **options: Any) -> Evaluation:
        """Check the data and load the model, then open the run: a bad spec stores nothing."""
        if options.get("loader") is None:
            cls.check(config)
            check_reachable(config.model)  # a server that is down: one sentence, no run row
            engine = load_engine(config.model, adapter=config.adapter, **config.engine)
            options["loader"] = lambda role: engine
        return super().create(config, *args, **options)

    def _eval(self, state: dict[str, Any], ctx: RoleContext, rnd: int) -> StageOutput:
        """Ask every question, check every answer, store them with their verdicts."""
        config = self.config
        items = read_items(config)
        inner = (
            ctx.loader("model")
            if ctx.loader
            else load_engine(config.model, adapter=config.adapter, **config.engine)
        )
        engine = CachedEngine(inner, self.store, run_id=self.run_id, role="model")
        try:
            report = evaluate(
                engine,
                items,
                system_prompt=config.system_prompt,
                samples=config.samples,
                temperature=config.temperature,
                top_p=config.top_p,
                max_tokens=config.max_tokens,
                progress=ctx.progress,
            )
        finally:
            engine.close()
        rows = [
            Trajectory(
                run_id=self.run_id,
                round=rnd,
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
        return StageOutput(report.summary(), add=rows)

    def accuracy(self) -> float | None:
        stage = self.store.stage(self.run_id, 0, "eval")
        return stage.metrics.get("accuracy") if stage and stage.status == "finished" else None


def _summary(store: Store, run: Run) -> str:
    stage = store.stage(run.id, 0, "eval")
    if stage is None or stage.status != "finished":
        return ""
    metrics = stage.metrics
    interval = metrics.get("interval") or {}
    ci = f" (95% CI {interval['low']:.3f}–{interval['high']:.3f})" if interval else ""
    return (
        f"accuracy {metrics['accuracy']:.3f}{ci} on {metrics['items']} items "
        f"({metrics['samples']} samples each)"
    )


SCHEME = Scheme(
    run=Evaluation,
    help="held-out accuracy of a model on a JSONL of {question, answer}",
    summary=_summary,
)

__all__ = ["SCHEME", "EvalJob", "Evaluation"]
