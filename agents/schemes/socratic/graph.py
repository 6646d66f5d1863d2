"""Socratic co-evolution (Socratic-Zero, arXiv 2509.24726) as a LangGraph graph.

A frozen Teacher, a Solver and a Generator improve each other from a few seed questions. Each
round over the curriculum:

Before the rounds: **setup** stores disjoint pools (seed candidates, a warm-up pool, held-out
and transfer items), **calibrate** keeps the candidates the base Solver solves 10-70% of k tries
(the paper's seed filter), **eval_base**, **eval_teacher** (the Teacher as a reference, when
``eval_teacher`` is on), **warmup** (LoRA SFT on the warm-up pool) and **eval**.

1. **select**: this round's questions: fresh ones (never solved, or too hard last round) plus a
   ``replay`` share of older ones.
2. **solve**: the Solver samples k solutions per question.
3. **verify**: rule-based answer check; the Teacher judges only what the rule cannot decide.
4. **pairs**: every (correct, incorrect) combination per question; the reference solution wins
   when all k fail.
5. **train_solver**: LoRA DPO on the round's pairs, continuing from the previous adapter.
6. **zones**: success rate s → mastered (s = 1), learning (0 < s < 1), too hard (s = 0).
7. **refine**: the Teacher (or, with ``refine.use_generator``, the trained Generator) writes a
   harder variant of mastered questions and a problem aimed at the error of learning ones.
8. **quality**: the Teacher re-solves each new problem at low temperature; irreproducible,
   ambiguous, malformed and duplicate problems are dropped with their reason.
9. **utility**: the updated Solver attempts each new problem; U = exp(-(s - 0.5)² / (2·0.2²)).
10. **train_generator**: weighted SFT of the Generator on (question, solution → new question),
    weighted by U, so it learns to write the Teacher's kind of problem.
11. **curriculum**: accepted problems join the curriculum; then **eval** on the held-out set.

Every stage is a node that writes all its rows and its ``finished`` mark in one store
transaction, and the graph checkpoints after every node with LangGraph's SQLite saver. A killed
run resumes at the first unfinished stage: a stage that finished is never redone, one that did
not leaves no rows behind, and its model calls come back from the response cache.
"""

from __future__ import annotations

import logging
import random
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agents.datasets import preference_records, weighted_records
from agents.eval.answers import extract_answer, normalise_text
from agents.eval.stats import Comparison, Estimate
from agents.models.base import ChatRequest, Engine
from agents.reporting import RunView
from agents.schemes.base import (
    SchemeRun,
    StageOutput,
    StageWork,
    add_stage_chain,
    ask_parsed,
    stage_node,
)
from agents.schemes.socratic.config import SocraticJob
from agents.schemes.socratic.estimate import describe
from agents.schemes.socratic.prepare import (
    SocraticContext,
    SocraticState,
    attempt,
    calibrate,
    evaluate_base,
    evaluate_solver,
    evaluate_teacher,
    load_tasks,
    question_items,
    setup,
    stage_trajectories,
    train,
    warmup,
)
from agents.schemes.socratic.report import SECTION, comparisons
from agents.schemes.socratic.rules import (
    PROMPTS,
    ZONES,
    build_pairs,
    chat_request,
    generator_messages,
    parse_judge,
    parse_problem,
    pick_batch,
    qc_reason,
    solver_messages,
    utility,
    zone_of,
)
from agents.store import Item, PreferencePair, Run, Trajectory

log = logging.getLogger(__name__)


def select(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """Pick this round's questions: fresh ones first, a ``replay`` share of older ones."""
    active = [i for i in question_items(ctx) if i.status == "active"]
    # Fresh: never attempted, or too hard in the round before (re-checked, as in the paper).
    # New problems come before the re-checks, so the curriculum keeps moving.
    fresh = [i.id for i in active if i.zone is None] + [
        i.id for i in active if i.zone == "too_hard"
    ]
    older = [i.id for i in active if i.zone in ("mastered", "learning")]
    size = ctx.config.questions_per_round or ctx.config.seeds.count
    rng = random.Random(f"{ctx.config.seed}-select-{rnd}")
    take_fresh, take_old = pick_batch(fresh, older, size, ctx.config.replay, rng)  # type: ignore[arg-type]
    batch = take_fresh + take_old
    return StageOutput(
        {"questions": len(batch), "fresh": len(take_fresh), "replay": len(take_old)},
        {"batch": batch},
    )


def solve(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """The Solver samples k solutions per question; the rule gives verdicts where it can."""
    engine = ctx.with_adapter("solver", state.get("solver_adapter"))
    found = ctx.store.items_by_id(state.get("batch", []))
    items = [found[i] for i in state.get("batch", []) if i in found]
    rows, _ = attempt(ctx, engine, items, ctx.config.solve, rnd, "solve")
    pending = sum(r.verdict is None for r in rows)
    return StageOutput(
        {"questions": len(items), "samples": len(rows), "pending": pending}, add=rows
    )


def verify(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """The Teacher judges solutions the rule could not decide; malformed replies are retried."""
    cfg = ctx.config.verify
    rows = stage_trajectories(ctx, rnd, "solve")
    pending = [t for t in rows if t.verdict is None]
    retries = 0
    if pending and cfg.judge:
        items = ctx.store.items_by_id([t.item_id for t in pending])  # type: ignore[misc]
        requests = [
            chat_request(
                "judge_system",
                PROMPTS["judge_user"].format(
                    question=items[t.item_id].content["question"],  # type: ignore[index]
                    answer=items[t.item_id].answer,  # type: ignore[index]
                    solution=t.messages[-1]["content"],
                ),
                temperature=cfg.temperature,
                max_tokens=cfg.max_tokens,
                seed=ctx.config.seed,
            )
            for t in pending
        ]
        verdicts, _, retries = ask_parsed(
            ctx.engine("teacher"), requests, parse_judge, cfg.retries, ctx.progress
        )
        for t, verdict in zip(pending, verdicts, strict=True):
            if verdict is not None:
                t.verdict = "correct" if verdict[0] else "incorrect"
                t.reward = float(verdict[0])
                t.meta = {**t.meta, "judge": verdict[1]}
    for t in pending:
        if t.verdict is None:  # never a crash: recorded as unverifiable, left out of pairs
            t.verdict = "unverifiable"
            t.meta = {**t.meta, "judge": "malformed" if cfg.judge else "judge off"}
    counts = Counter(t.verdict for t in rows)
    metrics = {v: counts[v] for v in ("correct", "incorrect", "unverifiable")}
    judged = len(pending) if cfg.judge else 0
    return StageOutput({**metrics, "judged": judged, "judge_retries": retries}, update=pending)


def _by_item(rows: list[Trajectory]) -> dict[int, list[Trajectory]]:
    grouped: dict[int, list[Trajectory]] = {}
    for t in rows:
        grouped.setdefault(t.item_id, []).append(t)  # type: ignore[arg-type]
    return grouped


def pairs(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """All (correct, incorrect) pairs per question; the reference wins when all samples fail."""
    grouped = _by_item(stage_trajectories(ctx, rnd, "solve"))
    items = ctx.store.items_by_id(list(grouped))
    rows, kinds = [], Counter()
    for item_id, trajectories in grouped.items():
        item = items[item_id]
        texts = {
            v: [t.messages[-1]["content"] for t in trajectories if t.verdict == v]
            for v in ("correct", "incorrect")
        }
        built = build_pairs(
            texts["correct"],
            texts["incorrect"],
            item.content.get("solution"),
            ctx.config.max_pairs_per_question,
        )
        for chosen, rejected, kind in built:
            kinds[kind] += 1
            rows.append(
                PreferencePair(
                    run_id=ctx.run_id,
                    item_id=item_id,
                    round=rnd,
                    prompt=solver_messages(item.content["question"]),
                    chosen=[{"role": "assistant", "content": chosen}],
                    rejected=[{"role": "assistant", "content": rejected}],
                    meta={"kind": kind},
                )
            )
    metrics = {
        "pairs": len(rows),
        "questions_with_pairs": len({p.item_id for p in rows}),
        "reference_winners": kinds["reference"],
    }
    return StageOutput(metrics, add=rows)


def train_solver(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """LoRA DPO of the Solver on this round's pairs, from the previous round's adapter."""
    rows = preference_records(ctx.store, ctx.run_id, round=rnd)
    if not rows:
        return StageOutput({"skipped": "no preference pairs this round", "pairs": 0})
    out = train(ctx, "solver", rnd, rows, state.get("solver_adapter"))
    out.metrics["pairs"] = len(rows)
    return out


def zones(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """Success rate per question → mastered / learning / too hard (stored on the item)."""
    grouped = _by_item(stage_trajectories(ctx, rnd, "solve"))
    items = ctx.store.items_by_id(list(grouped))
    counts: Counter[str] = Counter()
    for item_id, trajectories in grouped.items():
        verified = [t for t in trajectories if t.verdict in ("correct", "incorrect")]
        success = (
            sum(t.verdict == "correct" for t in verified) / len(verified) if verified else None
        )
        item = items[item_id]
        item.zone = zone_of(success)
        item.meta = {
            **item.meta,
            "zones": {**item.meta.get("zones", {}), str(rnd): item.zone},
            "success": {**item.meta.get("success", {}), str(rnd): success},
        }
        counts[item.zone] += 1
    return StageOutput({z: counts[z] for z in ZONES}, update=list(items.values()))


def _refine_inputs(ctx: SocraticContext, rnd: int) -> list[tuple[Item, str, str]]:
    """(question, the solution shown to the writer, zone) for mastered and learning questions."""
    grouped = _by_item(stage_trajectories(ctx, rnd, "solve"))
    items = ctx.store.items_by_id(list(grouped))
    inputs = []
    for item_id, trajectories in grouped.items():
        item = items[item_id]
        if item.zone not in ("mastered", "learning"):
            continue  # too hard: excluded this round
        wanted = "correct" if item.zone == "mastered" else "incorrect"
        shown = next(t for t in trajectories if t.verdict == wanted)
        inputs.append((item, shown.messages[-1]["content"], item.zone))
    cap = ctx.config.refine.max_problems
    return inputs[:cap] if cap else inputs


def _question_only(text: str) -> dict[str, str] | None:
    """A Generator reply is the new question itself; QC establishes its answer."""
    return {"question": text.strip(), "solution": "", "answer": ""} if text.strip() else None


def refine(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """New candidate problems: harder variants of mastered ones, error-targeted for learning."""
    cfg = ctx.config.refine
    inputs = _refine_inputs(ctx, rnd)
    sampling = {
        "temperature": cfg.temperature,
        "max_tokens": cfg.max_tokens,
        "seed": ctx.config.seed + rnd,
    }
    if cfg.use_generator:
        by, engine = "generator", ctx.with_adapter("generator", state.get("generator_adapter"))
        requests = [
            ChatRequest(
                messages=generator_messages(item.content["question"], shown, zone), **sampling
            )
            for item, shown, zone in inputs
        ]
        proposals, raws, _ = ask_parsed(engine, requests, _question_only, 0, ctx.progress)
    else:
        by, engine = "teacher", ctx.engine("teacher")
        requests = [
            chat_request(
                "refine_system",
                PROMPTS[f"refine_{zone}"].format(
                    question=item.content["question"], answer=item.answer, solution=shown
                ),
                **sampling,
            )
            for item, shown, zone in inputs
        ]
        proposals, raws, _ = ask_parsed(engine, requests, parse_problem, cfg.retries, ctx.progress)
    rows = [
        Item(
            run_id=ctx.run_id,
            kind="question",
            round=rnd,
            content={
                "question": proposal["question"] if proposal else "",
                "solution": proposal["solution"] if proposal else "",
                "parent_solution": shown,
                "raw": raw,
            },
            answer=(proposal["answer"] or None) if proposal else None,
            source=by,
            parent_id=item.id,
            status="candidate" if proposal else "dropped",
            meta={"from_zone": zone, **({} if proposal else {"dropped": "malformed"})},
        )
        for (item, shown, zone), proposal, raw in zip(inputs, proposals, raws, strict=True)
    ]
    proposed = sum(r.status == "candidate" for r in rows)
    metrics = {"requested": len(inputs), "proposed": proposed, "malformed": len(rows) - proposed}
    return StageOutput({**metrics, "by": by}, add=rows)


def quality(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """The Teacher re-solves each candidate; drop it when its answer cannot be reproduced."""
    cfg = ctx.config.quality
    candidates = [
        i
        for i in ctx.store.items(ctx.run_id, round=rnd, kind="question")
        if i.status == "candidate"
    ]
    generated = ctx.config.refine.use_generator
    samples = max(cfg.samples, 2) if generated else cfg.samples
    # Earlier questions (kept or dropped) and the held-out set: a new problem must be new.
    known = {
        normalise_text(i.content["question"])
        for i in [*question_items(ctx), *question_items(ctx, kind="heldout")]
        if i.status == "active" or i.round < rnd
    }
    requests = [
        ChatRequest(
            messages=[
                {"role": "system", "content": PROMPTS["qc_system"]},
                {"role": "user", "content": item.content["question"]},
            ],
            n=samples,
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            seed=ctx.config.seed + rnd,
        )
        for item in candidates
    ]
    results = ctx.engine("teacher").generate(requests, progress=ctx.progress) if requests else []
    reasons: Counter[str] = Counter()
    for item, result in zip(candidates, results, strict=True):
        question = item.content["question"]
        answers = [extract_answer(t) for t in result.texts]
        claimed = item.answer or answers[0]
        reason = qc_reason(question, result.texts, claimed, cfg.min_chars, known)
        if reason is None:
            item.status = "active"
            item.answer = claimed
            if not item.content.get("solution"):
                item.content = {**item.content, "solution": result.texts[0]}
            known.add(normalise_text(question))
        else:
            item.status = "dropped"
            reasons[reason] += 1
        item.meta = {**item.meta, "qc_answers": answers, **({"dropped": reason} if reason else {})}
    accepted = sum(i.status == "active" for i in candidates)
    metrics = {
        "checked": len(candidates),
        "accepted": accepted,
        "dropped": len(candidates) - accepted,
        "reasons": dict(reasons),
    }
    return StageOutput(metrics, update=candidates)


def _accepted(ctx: SocraticContext, rnd: int) -> list[Item]:
    return [
        i
        for i in ctx.store.items(ctx.run_id, round=rnd, kind="question")
        if i.status == "active" and i.parent_id is not None
    ]


def measure_utility(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """The updated Solver attempts each accepted problem; U peaks at a 50% success rate."""
    cfg = ctx.config.utility
    accepted = _accepted(ctx, rnd)
    engine = ctx.with_adapter("solver", state.get("solver_adapter"))
    rows, success = attempt(
        ctx, engine, accepted, ctx.config.solve, rnd, "utility", samples=cfg.samples
    )
    for item in accepted:
        s = success[item.id]  # type: ignore[index]
        item.meta = {**item.meta, "utility": utility(s, cfg.center, cfg.sigma), "solver_success": s}
    values = [i.meta["utility"] for i in accepted]
    metrics = {
        "problems": len(accepted),
        "mean_utility": sum(values) / len(values) if values else None,
        "mean_success": sum(success.values()) / len(success) if success else None,
    }
    return StageOutput(metrics, add=rows, update=accepted)


def train_generator(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """Weighted SFT of the Generator: (question, solution → accepted new question) × U."""
    settings = ctx.config.generator_training
    accepted = [i for i in _accepted(ctx, rnd) if i.meta.get("utility", 0) > 0]
    if settings is None or not accepted:
        reason = "generator training is off" if settings is None else "no new problems"
        return StageOutput({"skipped": reason, "examples": 0})
    parents = ctx.store.items_by_id([i.parent_id for i in accepted])  # type: ignore[misc]
    conversations = [
        [
            *generator_messages(
                parents[i.parent_id].content["question"],  # type: ignore[index]
                i.content["parent_solution"],
                i.meta["from_zone"],
            ),
            {"role": "assistant", "content": i.content["question"]},
        ]
        for i in accepted
    ]
    rows = weighted_records(conversations, [i.meta["utility"] for i in accepted])
    return train(ctx, "generator", rnd, rows, state.get("generator_adapter"))


def curriculum(state: SocraticState, ctx: SocraticContext, rnd: int) -> StageOutput:
    """D_{t+1} = D_t ∪ accepted problems; counts per zone for the report."""
    active = [i for i in question_items(ctx) if i.status == "active"]
    by_zone = Counter(i.zone or "unseen" for i in active)
    metrics = {
        "size": len(active),
        "added": sum(i.round == rnd and i.parent_id is not None for i in active),
        "by_zone": {z: by_zone[z] for z in (*ZONES, "unseen")},
    }
    return StageOutput(metrics)


# ---------------------------------------------------------------------------- routing and graph


def after_eval(
    state: SocraticState, runtime: Runtime[SocraticContext]
) -> Literal["select", "__end__"]:
    """Another round, or the end once the last round is evaluated."""
    return "select" if state.get("round", 0) < runtime.context.config.rounds else END


#: The stages of one round, in order (``select`` opens a round, ``eval`` closes it).
ROUND_STAGES: list[tuple[str, StageWork]] = [
    ("solve", solve),
    ("verify", verify),
    ("pairs", pairs),
    ("train_solver", train_solver),
    ("zones", zones),
    ("refine", refine),
    ("quality", quality),
    ("utility", measure_utility),
    ("train_generator", train_generator),
    ("curriculum", curriculum),
]


def build_graph() -> StateGraph:
    """The co-evolution graph (uncompiled): setup, warm-up, then rounds until ``rounds``."""
    graph = StateGraph(SocraticState, context_schema=SocraticContext)
    graph.add_node("setup", stage_node("setup", setup))
    graph.add_node("calibrate", stage_node("calibrate", calibrate))
    graph.add_node("eval_base", stage_node("eval_base", evaluate_base))
    graph.add_node("eval_teacher", stage_node("eval_teacher", evaluate_teacher))
    graph.add_node("warmup", stage_node("warmup", warmup))
    graph.add_node("eval", stage_node("eval", evaluate_solver))
    graph.add_node("select", stage_node("select", select, opens_round=True))

    # Seeds and held-out set first, the base model's score, the warm-up, the score before round 1.
    graph.add_edge(START, "setup")
    graph.add_edge("setup", "calibrate")
    graph.add_edge("calibrate", "eval_base")
    graph.add_edge("eval_base", "eval_teacher")
    graph.add_edge("eval_teacher", "warmup")
    graph.add_edge("warmup", "eval")
    # Each round: select questions, then the stages in order, then the held-out score again.
    add_stage_chain(graph, "select", ROUND_STAGES, "eval")
    # After every evaluation: another round, or the end.
    graph.add_conditional_edges("eval", after_eval)
    return graph


# ---------------------------------------------------------------------------- running


def _key(stage: str, rnd: int) -> str | int:
    """How :meth:`SocraticLoop.scores` names an evaluation: "base", "teacher" or its round."""
    return {"eval_base": "base", "eval_teacher": "teacher"}.get(stage, rnd)


class SocraticLoop(SchemeRun):
    """A Socratic co-evolution run: build, run (all or some rounds), resume and inspect.

    Example:
        >>> loop = SocraticLoop.create(SocraticJob(rounds=2), Workspace.resolve("ws"))
        >>> loop.run(rounds=1)          # stop after round 1 is evaluated
        >>> loop.run()                  # continue to the end
        >>> loop.scores()               # {"base": 0.02, 0: 0.05, 1: 0.08, 2: 0.1}
        >>> [i.content["question"] for i in loop.curriculum()]
    """

    scheme = "socratic"
    job = SocraticJob
    trained_roles = ("solver", "generator")
    report_section = SECTION

    def _build(
        self, *, progress: bool = True, loader: Callable[[str], Engine] | None = None
    ) -> tuple[SocraticContext, StateGraph, int]:
        context = SocraticContext(
            self.config, self.store, self.workspace, self.run_id, progress=progress, loader=loader
        )
        return context, build_graph(), 6 + self.config.rounds * (len(ROUND_STAGES) + 2)

    @classmethod
    def check(cls, config: SocraticJob) -> None:
        load_tasks(config)  # bad seed files fail here, before a run exists

    def run(self, rounds: int | None = None) -> Run:
        """Run to the end, or pause once round ``rounds`` is evaluated; resumes where it stopped."""

        def stop(node: str, state: dict[str, Any]) -> bool:
            if node == "calibrate" and self.config.calibrate_only:
                return True
            return rounds is not None and node == "eval" and state.get("round", 0) >= rounds

        if self.context.progress and not self.store.stages(self.run_id):
            print(describe(self.config), file=sys.stderr, flush=True)
        if rounds is not None and self.checkpointed.pending == ("select",):
            if self.checkpointed.state().get("round", 0) >= rounds:  # already paused there
                return self.store.get_run(self.run_id)
        return self._run_graph(stop)

    def calibrate(self) -> dict[str, Any]:
        """Run only the seed filter (setup and calibrate, if not done yet) and return its funnel:
        ``{"candidates", "kept", "band", "families": {name: {"candidates", "kept", "too_hard",
        "too_easy", "histogram"}}}``. The run stays resumable: :meth:`run` goes on from there."""
        found = self.store.stage(self.run_id, 0, "calibrate")
        if found is None or found.status != "finished":
            self._run_graph(lambda node, state: node == "calibrate")
            found = self.store.stage(self.run_id, 0, "calibrate")
        return dict(found.metrics) if found is not None else {}

    # Inspection

    def curriculum(self, status: str = "active") -> list[Item]:
        """Curriculum questions (seeds and accepted new problems) with their zones."""
        return [i for i in question_items(self.context) if i.status == status]

    def comparisons(self, transfer: bool = False) -> dict[str, Comparison]:
        """Paired before → after comparisons over the same held-out questions, e.g.
        ``{"base model → after round 2": Comparison(...)}`` (``.difference``, ``.low``,
        ``.high``, ``.p_value``, ``.text()``); ``transfer`` for the transfer families."""
        view = RunView.load(self.store, self.run_id)
        return dict(comparisons(view, "transfer_" if transfer else ""))

    def intervals(self) -> dict[str | int, Estimate]:
        """Held-out accuracy with its 95% interval, keyed like :meth:`scores`."""
        found: dict[str | int, Estimate] = {}
        for stage in self.store.stages(self.run_id):
            interval = (stage.metrics or {}).get("interval")
            if stage.status == "finished" and isinstance(interval, dict):
                found[_key(stage.name, stage.round)] = Estimate(**interval)
        return found

    def scores(self) -> dict[str | int, float]:
        """Held-out accuracy: ``"base"`` before training, then by round (0 = before round 1),
        and ``"teacher"`` when the Teacher was evaluated as a reference."""
        found: dict[str | int, float] = {}
        for stage in self.store.stages(self.run_id):
            accuracy = (stage.metrics or {}).get("accuracy")
            if stage.status == "finished" and accuracy is not None:
                found[_key(stage.name, stage.round)] = accuracy
        return found
