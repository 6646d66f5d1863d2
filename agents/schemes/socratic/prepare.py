"""What a Socratic run does before its rounds, and what the stages share.

The state and runtime context of the graph, the Solver's attempts and role training used by
every stage, and the stages before round 1: **setup** (disjoint pools), **calibrate** (the seed
filter), the held-out evaluations with their intervals, and the **warmup** on its own pool.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from agents.config import ConfigError, SampleSettings
from agents.datasets import sft_record
from agents.eval.answers import extract_answer
from agents.eval.stats import accuracy_estimate
from agents.models.base import ChatRequest, Engine
from agents.schemes.base import RoleContext, StageOutput, train_role
from agents.schemes.socratic.config import SocraticJob
from agents.schemes.socratic.rules import PROMPTS, chat_request, solver_messages
from agents.store import Item, Trajectory
from agents.task_families import Pools, check_answer_text, load_pools
from agents.tasks import Task, boxed_solution, read_math_tasks

# ---------------------------------------------------------------------------- state and context


class SocraticState(TypedDict, total=False):
    """What flows between nodes; everything bulky lives in the store."""

    round: int  # 0 before the loop, then 1..rounds
    batch: list[int]  # item ids solved this round
    solver_adapter: str | None
    generator_adapter: str | None


@dataclass
class SocraticContext(RoleContext):
    """Runtime context of the graph: config, store and the three role engines (loaded lazily)."""

    config: SocraticJob


# ---------------------------------------------------------------------------- helpers


def question_items(ctx: SocraticContext, kind: str = "question") -> list[Item]:
    return ctx.store.items(ctx.run_id, kind=kind)


def stage_trajectories(ctx: SocraticContext, rnd: int, stage: str) -> list[Trajectory]:
    return ctx.store.trajectories(ctx.run_id, role="solver", round=rnd, stage=stage)


def attempt(
    ctx: SocraticContext,
    engine: Engine,
    items: list[Item],
    cfg: SampleSettings,
    rnd: int,
    stage: str,
    samples: int | None = None,
    role: str = "solver",
) -> tuple[list[Trajectory], dict[int, float]]:
    """The Solver's samples on ``items`` as trajectories, and each item's rule success rate
    (``role`` names who answered: the Teacher too is scored as a reference)."""
    samples = samples or cfg.samples
    requests = [
        ChatRequest(
            messages=solver_messages(item.content["question"]),
            n=samples,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_tokens=cfg.max_tokens,
            seed=ctx.config.seed + rnd,
        )
        for item in items
    ]
    results = engine.generate(requests, progress=ctx.progress) if requests else []
    rows, success = [], {}
    for item, request, result in zip(items, requests, results, strict=True):
        verdicts = []
        for j, text in enumerate(result.texts):
            verdict = check_answer_text(text, item.answer or "", item.meta.get("check"))
            verdicts.append(verdict is True)
            rows.append(
                Trajectory(
                    run_id=ctx.run_id,
                    item_id=item.id,
                    round=rnd,
                    role=role,
                    stage=stage,
                    model=engine.fingerprint,
                    messages=[*request.messages, {"role": "assistant", "content": text}],
                    final_answer=extract_answer(text),
                    verdict=None if verdict is None else ("correct" if verdict else "incorrect"),
                    reward=None if verdict is None else float(verdict),
                    meta={"sample": j},
                )
            )
        success[item.id] = sum(verdicts) / len(verdicts)  # type: ignore[index]
    return rows, success


def train(
    ctx: SocraticContext, role: str, rnd: int, rows: list[dict[str, Any]], previous: str | None
) -> StageOutput:
    """Train ``role``'s adapter on ``rows``: DPO rows train the Solver, SFT rows the warm-up
    (Solver) or the Generator's weighted SFT."""
    cfg = ctx.config
    if "chosen" in rows[0]:
        method, settings, lora = "dpo", cfg.solver_training, cfg.solver_lora
    elif role == "solver":
        method, settings, lora = "sft", cfg.warmup, cfg.solver_lora
    else:
        method, settings, lora = "sft", cfg.generator_training, cfg.generator_lora
    return train_role(
        ctx,
        role,
        rnd,
        rows,
        base=getattr(cfg, role),
        method=method,
        settings=settings,
        lora=lora,
        previous=previous,
        system_prompt=PROMPTS[f"{role}_system"],
    )


# ---------------------------------------------------------------------------- stages


def _task_item(ctx: SocraticContext, kind: str, task: Task, status: str, **meta: Any) -> Item:
    return Item(
        run_id=ctx.run_id,
        kind=kind,
        round=0,
        content={"question": task.question, "solution": boxed_solution(task), "task": task.id},
        answer=task.answer,
        source=task.source,
        status=status,
        meta={
            "template": task.template,
            "family": task.family or task.source,
            "check": task.check,
            **meta,
        },
    )


def setup(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """Store the seed candidates, the warm-up pool and the held-out sets (disjoint pools).

    With the seed filter on, seeds are stored as candidates and ``calibrate`` activates those in
    the Solver's learning zone; otherwise the first ``seeds.count`` are the first curriculum.
    """
    pools = load_tasks(ctx.config)
    status = "candidate" if ctx.config.calibrate.enabled else "active"
    rows = [
        *(_task_item(ctx, "question", t, status) for t in pools.train),
        *(_task_item(ctx, "warmup", t, "active") for t in pools.warmup),
        *(_task_item(ctx, "heldout", t, "active", transfer=False) for t in pools.heldout),
        *(_task_item(ctx, "heldout", t, "active", transfer=True) for t in pools.transfer),
    ]
    seed_templates = {t.template for t in pools.train if t.template is not None}
    metrics = {
        "candidates" if ctx.config.calibrate.enabled else "seeds": len(pools.train),
        "warmup_pool": len(pools.warmup),
        "heldout": len(pools.heldout),
        "transfer_heldout": len(pools.transfer),
        "families": dict(Counter(t.family or t.source for t in pools.train)),
        "seed_templates": len(seed_templates),
        "shared_templates": len(seed_templates & {t.template for t in pools.heldout}),
    }
    return StageOutput(
        metrics, {"round": 0, "solver_adapter": None, "generator_adapter": None}, add=rows
    )


def calibrate(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """The paper's seed filter: the base Solver tries each candidate k times; candidates whose
    success rate lies in ``[min_success, max_success]`` become seeds (up to ``seeds.count``).

    The funnel per family (candidates → kept, and how many candidates solved j of k) is in the
    metrics, so a user sees which families sit in the Solver's learning zone.
    """
    cfg = ctx.config.calibrate
    candidates = [i for i in question_items(ctx) if i.status == "candidate"]
    if not cfg.enabled or not candidates:
        return StageOutput({"skipped": "the seed filter is off"})
    engine = ctx.with_adapter("solver", None)
    rows, success = attempt(ctx, engine, candidates, cfg, rnd, "calibrate")
    wanted = ctx.config.seeds.count
    funnel: dict[str, dict[str, Any]] = {}
    kept = 0
    for item in candidates:
        s = success[item.id]  # type: ignore[index]
        family = funnel.setdefault(
            item.meta.get("family") or item.source or "?",
            {
                "candidates": 0,
                "kept": 0,
                "in_band": 0,
                "too_hard": 0,
                "too_easy": 0,
                "histogram": [0] * (cfg.samples + 1),
            },
        )
        family["candidates"] += 1
        family["histogram"][round(s * cfg.samples)] += 1
        if s < cfg.min_success:
            reason = "too_hard"
        elif s > cfg.max_success:
            reason = "too_easy"
        else:
            family["in_band"] += 1
            reason = None if kept < wanted else "surplus"
        if reason is None:
            kept += 1
            family["kept"] += 1
            item.status = "active"
        else:
            item.status = "dropped"
            family[reason] = family.get(reason, 0) + 1
        item.meta = {**item.meta, "calibration": s, **({"dropped": reason} if reason else {})}
    metrics = {
        "candidates": len(candidates),
        "kept": kept,
        "wanted": wanted,
        "band": [cfg.min_success, cfg.max_success],
        "samples": cfg.samples,
        "families": funnel,
    }
    return StageOutput(metrics, add=rows, update=candidates)


def _evaluate(
    state: SocraticState,
    ctx: SocraticContext,
    rnd: int,
    adapter: str | None,
    role: str = "solver",
) -> StageOutput:
    """Held-out mean@k with its interval, per family, and separately on transfer families."""
    cfg = ctx.config.eval
    engine = ctx.with_adapter(role, adapter) if role == "solver" else ctx.engine(role)
    items = question_items(ctx, kind="heldout")
    rows, success = attempt(ctx, engine, items, cfg, rnd, "eval", role=role)
    metrics: dict[str, Any] = {"items": len(items), "samples": cfg.samples}
    for part, transfer in (("", False), ("transfer_", True)):
        chosen = [i for i in items if bool(i.meta.get("transfer")) == transfer]
        if not chosen:
            continue
        scores = {str(i.id): success[i.id] for i in chosen}  # type: ignore[index]
        estimate = accuracy_estimate(scores, cfg.samples, seed=ctx.config.seed)
        families: dict[str, list[float]] = {}
        for i in chosen:
            families.setdefault(i.meta.get("family") or i.source or "?", []).append(
                success[i.id]  # type: ignore[index]
            )
        metrics[f"{part}accuracy"] = estimate.value
        metrics[f"{part}interval"] = estimate.as_dict()
        metrics[f"_{part}scores"] = scores  # per question; "_": not printed
        metrics[f"{part}families"] = {
            name: {"accuracy": sum(v) / len(v), "items": len(v)} for name, v in families.items()
        }
    return StageOutput(metrics, add=rows)


def evaluate_base(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """Held-out accuracy of the Solver's base model, before any training."""
    if not ctx.config.eval_base:
        return StageOutput({"skipped": "eval_base is off"})
    return _evaluate(state, ctx, rnd, None)


def evaluate_teacher(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """Held-out accuracy of the Teacher with the Solver's prompt: the reference the Solver is
    measured against (a Teacher that cannot solve the held-out set cannot teach it)."""
    if not ctx.config.eval_teacher:
        return StageOutput({"skipped": "eval_teacher is off"})
    return _evaluate(state, ctx, rnd, None, role="teacher")


def evaluate_solver(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """Held-out accuracy of the current Solver (round 0: before round 1)."""
    return _evaluate(state, ctx, rnd, state.get("solver_adapter"))


def _warmup_solutions(
    ctx: SocraticContext, items: list[Item]
) -> tuple[list[tuple[Item, str]], Counter]:
    """A solution per warm-up item: the source's own worked solution, else the Teacher's (asked
    to show its working) when the dataset's scorer accepts its answer and it is more than a bare
    ``\\boxed{}`` line; items with neither are left out. A warm-up on bare boxed answers
    lowered held-out accuracy (0.425 → 0.325 on 200 questions, McNemar p = 0.02); on the
    Teacher's replies its effect varied with the pool (-0.08 to +0.165 in measured runs)."""
    missing = [i for i in items if not i.content.get("solution")]
    written: dict[int, str] = {}
    if missing:
        requests = [
            chat_request(
                "warmup_system",
                i.content["question"],
                temperature=0.2,
                max_tokens=ctx.config.quality.max_tokens,
                seed=ctx.config.seed,
            )
            for i in missing
        ]
        results = ctx.engine("teacher").generate(requests, progress=ctx.progress)
        for item, result in zip(missing, results, strict=True):
            text = result.texts[0]
            shown = _boxed_ending(text, item.answer or "")
            head, boxed, _ = text.strip().partition("\\boxed{")
            bare = bool(boxed) and "\n" not in head and "=" not in head
            if not bare and check_answer_text(text, item.answer or "", item.meta.get("check")):
                written[item.id] = shown  # type: ignore[index]
    kinds: Counter[str] = Counter()
    solutions: list[tuple[Item, str]] = []
    for item in items:
        if item.content.get("solution"):
            kinds["source"] += 1
            solutions.append((item, item.content["solution"]))
        elif item.id in written:
            kinds["teacher"] += 1
            solutions.append((item, written[item.id]))  # type: ignore[index]
        else:
            kinds["unsolved"] += 1
    return solutions, kinds


def _boxed_ending(text: str, answer: str) -> str:
    """A Teacher solution ending in the Solver's answer line."""
    body = text.rstrip()
    if "\\boxed{" in body[-80:]:
        return body
    return f"{body}\nThe answer is \\boxed{{{answer}}}."


def warmup(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """Short LoRA SFT of the Solver on its own pool (the paper's warm-up), disjoint from seeds
    and held-out items; items without a worked solution get the Teacher's verified one."""
    settings = ctx.config.warmup
    items = question_items(ctx, kind="warmup")
    if settings is None or not items:
        reason = "warmup is off" if settings is None else "the warm-up pool is empty"
        return StageOutput({"skipped": reason})
    solutions, kinds = _warmup_solutions(ctx, items)
    if not solutions:
        return StageOutput(
            {"skipped": "no warm-up question has a worked solution", "solutions": dict(kinds)}
        )
    rows = [
        sft_record(
            [
                *solver_messages(i.content["question"]),
                {"role": "assistant", "content": solution},
            ]
        )
        for i, solution in solutions
    ]
    out = train(ctx, "solver", 0, rows, None)
    out.metrics["solutions"] = dict(kinds)
    return out


# ---------------------------------------------------------------------------- data


def load_tasks(config: SocraticJob) -> Pools:
    """The disjoint pools of a config; a bad family or file is a :class:`ConfigError`."""
    cfg, calib = config.seeds, config.calibrate
    candidates = (calib.candidates or 3 * cfg.count) if calib.enabled else cfg.count
    try:
        pools = load_pools(
            cfg.mixture(),
            train=candidates,
            warmup=cfg.warmup_pool if config.warmup is not None else 0,
            heldout=0 if cfg.heldout_data else cfg.heldout,
            transfer=[f.spec() for f in cfg.transfer],
            transfer_heldout=cfg.transfer_heldout if cfg.transfer else 0,
            heldout_share=cfg.heldout_share,
            seed=config.seed,
        )
        if cfg.heldout_data is not None:
            pools.heldout = read_math_tasks(Path(cfg.heldout_data), limit=cfg.heldout)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return pools
