"""Agent distillation (arXiv 2505.17612) as a LangGraph graph: a teacher's tool use → a small agent.

A teacher agent solves tasks with tools — in code mode (``mode: code``) by writing one Python
block per step, run in the sandbox, with ``retrieve(...)`` and ``final_answer(...)`` callable
inside the code; in tools mode by one JSON call per step (``python_exec``, ``retrieve``,
``final_answer``). Its good trajectories teach a small student to do the same. The stages, each
committed atomically:

1. **setup**: training and held-out tasks: math from reasoning-gym families or gsm_symbolic
   (held-out pools disjoint by generator seed or template), fanoutqa questions, or JSONL.
2. **write_facts**: the teacher writes questions about long-tail facts of corpus articles; a
   question is kept when its answer is a short span of the article, it names the article's
   subject and hides the answer, and the base student gets it wrong closed book.
3. **teacher_cot**: the teacher answers every training task with plain chain of thought. Its
   first paragraph becomes the first-thought prefix; its correct answers are the CoT baseline's
   training data.
4. **teacher_agent**: the teacher runs the agent on every training task, its first Thought
   starting with the prefix.
5. **filter**: keep trajectories whose final answer is right (the dataset's scorer, a numeric
   match or a normalised match, else optionally the teacher as judge), with no parse error, not
   stopped by the step limit. Execution errors stay in: the student learns to recover from them.
6. **train_student**: LoRA SFT on the kept conversations, loss on assistant turns only.
7. **train_cot**: the CoT baseline: the same student fine-tuned on the teacher's correct CoT
   answers, without tools.
8. **eval_student_closed**, **eval_teacher_closed**: base student and teacher without tools.
9. **eval_***: on the held-out tasks: the student agent before training, the teacher agent, the
   student after, the student after with self-consistent action generation, and the CoT baseline
   — each overall and per task source, with intervals.

The graph checkpoints after every stage (LangGraph's SQLite saver) and a finished stage is never
redone, so a killed run resumes where it stopped; model calls come back from the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import yaml
from langgraph.graph import END, START, StateGraph

from agents.datasets import sft_records_from
from agents.episodes.agent_loop import (
    AGENT_SYSTEM_PROMPT,
    DEMONSTRATIONS,
    Episode,
    LoopSettings,
    first_paragraph,
    run_agent,
)
from agents.episodes.code_agent import CODE_DEMONSTRATIONS, CODE_SYSTEM_PROMPT, run_code_agent
from agents.eval.answers import extract_answer
from agents.eval.stats import accuracy_estimate
from agents.models.base import ChatRequest, Engine
from agents.schemes.agent_distill.config import AgentDistillJob, AgentRunSettings
from agents.schemes.agent_distill.report import EVALS, SECTION
from agents.schemes.agent_distill.sources import CORPUS_FACTS, fact_articles, load_tasks, parse_fact
from agents.schemes.base import (
    RoleContext,
    SchemeRun,
    StageOutput,
    add_stage_chain,
    ask_parsed,
    train_role,
)
from agents.schemes.socratic.rules import parse_judge
from agents.store import Item, Run, Trajectory, Workspace
from agents.task_families import score_text
from tools import DEFAULT_TOOLS, tool_schemas
from tools.retrieval import Corpus

log = logging.getLogger(__name__)

#: Prompts of the teacher's chain of thought and of its judging, from ``prompts.yaml``.
PROMPTS: dict[str, str] = yaml.safe_load(Path(__file__).with_name("prompts.yaml").read_text())
COT_SYSTEM_PROMPT = PROMPTS["cot_system"]
JUDGE_PROMPT = PROMPTS["judge_user"]
FACT_PROMPT = PROMPTS["fact_writer"]
FACT_PREFIX = "Question:"


# ---------------------------------------------------------------------------- state and context


class DistillState(TypedDict, total=False):
    student_adapter: str | None
    cot_adapter: str | None


@dataclass
class DistillContext(RoleContext):
    """Runtime context: config, store, the two engines and the corpus (all opened lazily)."""

    config: AgentDistillJob
    corpus_factory: Callable[[], Corpus | None] | None = None
    _corpus: Corpus | None = None

    def corpus(self) -> Corpus | None:
        """The retrieval corpus, built into the workspace on first use (then reused)."""
        if self._corpus is None:
            if self.corpus_factory is not None:
                self._corpus = self.corpus_factory()
            else:
                self._corpus = open_corpus(self.workspace, self.config, self.tasks(None))
        return self._corpus

    def tasks(self, kind: str | None) -> list[Item]:
        return [i for i in self.store.items(self.run_id) if kind is None or i.kind == kind]


def open_corpus(workspace: Workspace, config: AgentDistillJob, items: list[Item]) -> Corpus:
    """The Wikipedia-summaries corpus in the workspace, holding at least every task's article."""
    from tools.retrieval import build_default_corpus, wiki_summaries

    corpus = build_default_corpus(workspace.chroma_dir, limit=config.corpus.limit)
    needed = {i.meta.get("evidence") for i in items} - {None}
    if needed and config.corpus.limit is not None:
        corpus.add_documents(d for d in wiki_summaries() if d["title"] in needed)
    return corpus


def _loop_settings(cfg: AgentRunSettings, seed: int, **extra: Any) -> LoopSettings:
    return LoopSettings(**cfg.model_dump(), seed=seed, **extra)  # same field names


def _domain(item: Item) -> str:
    return str(item.content.get("domain") or "math")


def _source(item: Item) -> str:
    return str(item.source or _domain(item))


def _correct(answer: str | None, item: Item) -> bool:
    """The dataset's own scorer for generated tasks, else the domain's rule."""
    return score_text(answer, item.answer or "", (item.meta or {}).get("check"), _domain(item))


def run_agents(
    ctx: DistillContext,
    engine: Engine,
    questions: list[str],
    settings: LoopSettings,
    *,
    prefixes: list[str | None] | None = None,
    desc: str,
) -> list[Episode]:
    """The agent loop of the run's mode: JSON tool calls, or Python blocks in the sandbox."""
    runner = run_code_agent if ctx.config.mode == "code" else run_agent
    return runner(
        engine,
        questions,
        settings=settings,
        corpus=ctx.corpus(),
        prefixes=prefixes,
        progress=ctx.progress,
        desc=desc,
    )


def agent_prompt(mode: str) -> tuple[str, list[dict[str, Any]]]:
    """The system prompt and worked examples agents of ``mode`` run (and are trained) with."""
    if mode == "code":
        return CODE_SYSTEM_PROMPT, CODE_DEMONSTRATIONS
    return AGENT_SYSTEM_PROMPT, DEMONSTRATIONS


def _episode_row(
    ctx: DistillContext, item: Item, episode: Episode, role: str, stage: str, model: str
) -> Trajectory:
    ok = _correct(episode.answer, item)
    return Trajectory(
        run_id=ctx.run_id,
        item_id=item.id,
        role=role,
        stage=stage,
        model=model,
        messages=episode.messages,
        # A code agent's functions are described in its system prompt, not offered as tools.
        tools=None if ctx.config.mode == "code" else tool_schemas(DEFAULT_TOOLS),
        final_answer=episode.answer,
        verdict="correct" if ok else "incorrect",
        reward=float(ok),
        meta={"domain": _domain(item), "source": _source(item), **episode.summary()},
    )


def _accuracy(rows: list[Trajectory]) -> dict[str, Any]:
    """Accuracy overall and per domain, plus how the episodes ended."""
    metrics: dict[str, Any] = {"items": len(rows)}
    if not rows:
        return metrics
    metrics["accuracy"] = sum(r.verdict == "correct" for r in rows) / len(rows)
    per_item: dict[str, list[float]] = {}
    for r in rows:
        per_item.setdefault(str(r.item_id), []).append(float(r.verdict == "correct"))
    scores = {k: sum(v) / len(v) for k, v in per_item.items()}
    samples = max(len(v) for v in per_item.values())
    metrics["interval"] = accuracy_estimate(scores, samples).as_dict()
    metrics["_scores"] = scores  # per question, for paired comparisons; "_": not printed
    for domain in sorted({r.meta.get("domain", "math") for r in rows}):
        part = [r for r in rows if r.meta.get("domain", "math") == domain]
        metrics[f"accuracy_{domain}"] = sum(r.verdict == "correct" for r in part) / len(part)
    # Per task source, under the key prefix "<source>_" (the report's per-source parts).
    source_of = {
        str(r.item_id): str(r.meta.get("source") or r.meta.get("domain", "math")) for r in rows
    }
    metrics["sources"] = sorted(set(source_of.values()))
    for source in metrics["sources"]:
        part_scores = {k: v for k, v in scores.items() if source_of[k] == source}
        metrics[f"{source}_items"] = len(part_scores)
        metrics[f"{source}_accuracy"] = sum(part_scores.values()) / len(part_scores)
        metrics[f"{source}_interval"] = accuracy_estimate(part_scores, samples).as_dict()
        metrics[f"_{source}_scores"] = part_scores
    if any("steps" in r.meta for r in rows):
        metrics.update(_tool_use(rows))
        metrics["answered"] = sum(r.meta.get("status") == "answered" for r in rows) / len(rows)
        metrics["parse_errors"] = sum(r.meta.get("parse_errors", 0) for r in rows)
        metrics["exec_errors"] = sum(r.meta.get("exec_errors", 0) for r in rows)
    return metrics


def _tool_use(rows: list[Trajectory]) -> dict[str, float]:
    """Mean steps, and the share of episodes that ran Python / retrieved at least once."""
    if not rows:
        return {}
    uses = [r.meta.get("tool_uses") or {} for r in rows]
    return {
        "mean_steps": sum(r.meta.get("steps", 0) for r in rows) / len(rows),
        "with_python": sum(u.get("python_exec", 0) > 0 for u in uses) / len(rows),
        "with_retrieve": sum(u.get("retrieve", 0) > 0 for u in uses) / len(rows),
    }


# ---------------------------------------------------------------------------- stages


def setup(state: DistillState, ctx: DistillContext, rnd: int) -> StageOutput:
    """Store the training and held-out tasks."""
    train, heldout = load_tasks(ctx.config)
    rows = [
        Item(
            run_id=ctx.run_id,
            kind=kind,
            content={"question": t.question, "domain": t.domain, "task": t.id},
            answer=t.answer,
            source=t.source,
            status="active",
            meta={"evidence": t.evidence, "template": t.template, "check": t.check},
        )
        for kind, tasks in (("task", train), ("heldout", heldout))
        for t in tasks
    ]
    metrics = {
        "tasks": len(train),
        "heldout": len(heldout),
        **{f"tasks_{d}": sum(t.domain == d for t in train) for d in ("math", "factual")},
        **{f"heldout_{d}": sum(t.domain == d for t in heldout) for d in ("math", "factual")},
        "sources": sorted({t.source for t in [*train, *heldout]}),
    }
    return StageOutput(metrics, {"student_adapter": None, "cot_adapter": None}, add=rows)


# ---------------------------------------------------------------------------- corpus facts


def write_facts(state: DistillState, ctx: DistillContext, rnd: int) -> StageOutput:
    """The teacher writes questions about long-tail corpus facts; the checks and the base
    student's closed-book answers decide which are kept (article-disjoint train / held-out)."""
    cfg = ctx.config
    wanted = {"task": cfg.tasks.corpus_facts, "heldout": cfg.tasks.heldout_corpus_facts}
    if not any(wanted.values()):
        return StageOutput({"skipped": "tasks.corpus_facts and heldout_corpus_facts are 0"})
    used = {str(i.meta.get("evidence")) for i in ctx.tasks(None) if i.meta.get("evidence")}
    articles = fact_articles(cfg, cfg.facts.articles * sum(wanted.values()), used)
    requests = [
        ChatRequest(
            messages=[
                {
                    "role": "user",
                    "content": FACT_PROMPT.format(
                        title=d["title"],
                        text=d["text"][:1500],
                        max_words=cfg.facts.max_answer_words,
                    ),
                }
            ],
            temperature=0.0,
            max_tokens=cfg.facts.max_tokens,
            seed=cfg.seed,
            prefix=FACT_PREFIX,  # small models often drop the label and then the format
        )
        for d in articles
    ]
    results = ctx.engine("teacher").generate(requests, progress=ctx.progress) if requests else []
    reasons: dict[str, int] = {}
    drafts: list[tuple[dict[str, str], str, str]] = []
    for doc, result in zip(articles, results, strict=True):
        draft = FACT_PREFIX + result.texts[0]
        parsed = parse_fact(draft, doc["title"], doc["text"], cfg.facts.max_answer_words)
        if isinstance(parsed, str):
            reasons[parsed] = reasons.get(parsed, 0) + 1
        else:
            drafts.append((doc, *parsed))
    if cfg.facts.closed_book_filter and drafts:
        # Kept only if the base student cannot answer it without tools.
        probe = [
            Item(
                run_id=ctx.run_id,
                kind="probe",
                content={"question": q, "domain": "factual"},
                answer=a,
            )
            for _, q, a in drafts
        ]
        engine = ctx.with_adapter("student", None)
        requests = _cot_requests(probe, ctx.config.cot, ctx.config.seed)
        answered = engine.generate(requests, progress=ctx.progress)
        known = [
            _correct(extract_answer(r.texts[0]), item)
            for item, r in zip(probe, answered, strict=True)
        ]
        reasons["student_knows"] = sum(known)
        drafts = [d for d, k in zip(drafts, known, strict=True) if not k]
    rows: list[Item] = []
    # Held-out first, so that a short supply still leaves the evaluation its questions.
    kinds = ["heldout"] * wanted["heldout"] + ["task"] * wanted["task"]
    for (doc, question, answer), kind in zip(drafts, kinds, strict=False):
        rows.append(
            Item(
                run_id=ctx.run_id,
                kind=kind,
                content={"question": question, "domain": "factual", "task": f"fact/{doc['title']}"},
                answer=answer,
                source=CORPUS_FACTS,
                status="active",
                meta={"evidence": doc["title"]},
            )
        )
    metrics = {
        "articles": len(articles),
        "kept": len(rows),
        "tasks": sum(r.kind == "task" for r in rows),
        "heldout": sum(r.kind == "heldout" for r in rows),
        **{f"dropped_{k}": v for k, v in sorted(reasons.items())},
    }
    if len(rows) < sum(wanted.values()):
        log.warning(
            "corpus facts: %d of %d questions passed the checks; raise facts.articles for more",
            len(rows),
            sum(wanted.values()),
        )
    return StageOutput(metrics, add=rows)


def _cot_requests(items: list[Item], cfg: Any, seed: int) -> list[ChatRequest]:
    return [
        ChatRequest(
            messages=[
                {"role": "system", "content": COT_SYSTEM_PROMPT},
                {"role": "user", "content": i.content["question"]},
            ],
            n=cfg.samples,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_tokens=cfg.max_tokens,
            seed=seed,
        )
        for i in items
    ]


def _cot_rows(
    ctx: DistillContext, engine: Engine, items: list[Item], role: str, stage: str
) -> list[Trajectory]:
    requests = _cot_requests(items, ctx.config.cot, ctx.config.seed)
    results = engine.generate(requests, progress=ctx.progress) if requests else []
    rows = []
    for item, request, result in zip(items, requests, results, strict=True):
        for j, text in enumerate(result.texts):
            answer = extract_answer(text)
            ok = _correct(answer, item)
            rows.append(
                Trajectory(
                    run_id=ctx.run_id,
                    item_id=item.id,
                    role=role,
                    stage=stage,
                    model=engine.fingerprint,
                    messages=[*request.messages, {"role": "assistant", "content": text}],
                    final_answer=answer,
                    verdict="correct" if ok else "incorrect",
                    reward=float(ok),
                    meta={"domain": _domain(item), "source": _source(item), "sample": j},
                )
            )
    return rows


def teacher_cot(state: DistillState, ctx: DistillContext, rnd: int) -> StageOutput:
    """The teacher's chain-of-thought answers to the training tasks."""
    cfg = ctx.config
    if not (cfg.first_thought or cfg.cot_baseline):
        return StageOutput({"skipped": "first_thought and cot_baseline are off"})
    rows = _cot_rows(ctx, ctx.engine("teacher"), ctx.tasks("task"), "teacher", "cot")
    return StageOutput({"answers": len(rows), **_accuracy(rows)}, add=rows)


def _stage_rows(ctx: DistillContext, role: str, stage: str) -> list[Trajectory]:
    return ctx.store.trajectories(ctx.run_id, role=role, stage=stage)


def teacher_agent(state: DistillState, ctx: DistillContext, rnd: int) -> StageOutput:
    """The teacher agent on every training task, its first Thought opened by its CoT."""
    cfg = ctx.config
    items = ctx.tasks("task")
    prefixes: list[str | None] = [None] * len(items)
    if cfg.first_thought:
        cot = {t.item_id: t for t in _stage_rows(ctx, "teacher", "cot") if t.meta["sample"] == 0}
        for k, item in enumerate(items):
            paragraph = (
                first_paragraph(cot[item.id].messages[-1]["content"]) if item.id in cot else ""
            )
            prefixes[k] = f"Thought: {paragraph}" if paragraph else None
    engine = ctx.engine("teacher")
    episodes = run_agents(
        ctx,
        engine,
        [i.content["question"] for i in items],
        _loop_settings(cfg.teacher_agent, cfg.seed),
        prefixes=prefixes,
        desc="teacher agent",
    )
    rows = [
        _episode_row(ctx, item, ep, "teacher", "agent", engine.fingerprint)
        for item, ep in zip(items, episodes, strict=True)
    ]
    metrics = {
        "trajectories": len(rows),
        "with_prefix": sum(p is not None for p in prefixes),
        **_accuracy(rows),
    }
    return StageOutput(metrics, add=rows)


def _judge(ctx: DistillContext, pending: list[tuple[Trajectory, Item]]) -> dict[int, bool]:
    """The teacher's verdict on factual answers the normalised match rejected."""
    requests = [
        ChatRequest(
            messages=[
                {
                    "role": "user",
                    "content": JUDGE_PROMPT.format(
                        question=item.content["question"],
                        reference=item.answer,
                        answer=row.final_answer,
                    ),
                }
            ],
            temperature=0.0,
            max_tokens=64,
            seed=ctx.config.seed,
        )
        for row, item in pending
    ]
    parsed, _, _ = ask_parsed(ctx.engine("teacher"), requests, parse_judge, 1, ctx.progress)
    return {row.id: bool(p and p[0]) for (row, _), p in zip(pending, parsed, strict=True)}


def filter_trajectories(state: DistillState, ctx: DistillContext, rnd: int) -> StageOutput:
    """Keep correct trajectories with no parse error that ended with a final answer."""
    rows = _stage_rows(ctx, "teacher", "agent")
    items = ctx.store.items_by_id([r.item_id for r in rows if r.item_id is not None])
    judged: dict[int, bool] = {}
    if ctx.config.judge:
        pending = [
            (r, items[r.item_id])
            for r in rows
            if r.verdict != "correct"
            and r.final_answer
            and r.meta.get("domain") == "factual"
            and r.meta.get("status") == "answered"
        ]
        judged = _judge(ctx, pending) if pending else {}
    reasons: dict[str, int] = {"wrong_answer": 0, "parse_error": 0, "step_limit": 0}
    kept = 0
    for r in rows:
        correct = r.verdict == "correct" or judged.get(r.id, False)
        if judged.get(r.id):
            r.verdict, r.reward = "correct", 1.0
        why = (
            "step_limit"
            if r.meta.get("status") != "answered"
            else "parse_error"
            if r.meta.get("parse_errors")
            else None
            if correct
            else "wrong_answer"
        )
        r.meta = {**r.meta, "kept": why is None, "dropped": why, "judged": r.id in judged}
        if why is None:
            kept += 1
        else:
            reasons[why] += 1
    metrics = {
        "trajectories": len(rows),
        "kept": kept,
        "keep_rate": kept / len(rows) if rows else 0.0,
        "judged": len(judged),
        "judged_correct": sum(judged.values()),
        **{f"dropped_{k}": v for k, v in reasons.items()},
        "kept_with_exec_errors": sum(
            1 for r in rows if r.meta["kept"] and r.meta.get("exec_errors")
        ),
        # What the student will learn: tool use in the kept trajectories.
        **{f"kept_{k}": v for k, v in _tool_use([r for r in rows if r.meta["kept"]]).items()},
    }
    for source in sorted({str(r.meta.get("source")) for r in rows}):
        metrics[f"kept_{source}"] = sum(
            1 for r in rows if r.meta["kept"] and str(r.meta.get("source")) == source
        )
    return StageOutput(metrics, update=rows)


def _train_student(
    ctx: DistillContext, role: str, records: list[dict[str, Any]], system_prompt: str
) -> StageOutput:
    cfg = ctx.config
    out = train_role(
        ctx,
        role,
        0,
        records,
        base=cfg.student,
        method="sft",
        settings=cfg.training,
        lora=cfg.lora,
        previous=None,
        system_prompt=system_prompt,
    )
    for checkpoint in out.add:  # the exported agent's card: its tools, mode and examples
        extra: dict[str, Any] = {"tools": records[0].get("tools") or []}
        if role == "student":
            _, demonstrations = agent_prompt(cfg.mode)
            extra |= {"agent_mode": cfg.mode, "demonstrations": demonstrations}
            if cfg.mode == "code":  # the functions its code may call, for the card
                extra["tools"] = tool_schemas(DEFAULT_TOOLS)
        checkpoint.metrics = {**checkpoint.metrics, **extra}
    return out


def train_student(state: DistillState, ctx: DistillContext, rnd: int) -> StageOutput:
    """LoRA SFT of the student on the kept trajectories (loss on assistant turns only)."""
    kept = [r for r in _stage_rows(ctx, "teacher", "agent") if r.meta.get("kept")]
    if not kept:
        return StageOutput({"skipped": "the filter kept no trajectory"}, {"student_adapter": None})
    # The system prompt and the worked examples are the prompt, not something to learn.
    system_prompt, demonstrations = agent_prompt(ctx.config.mode)
    records = sft_records_from(kept, context_messages=1 + len(demonstrations))
    if not records:
        return StageOutput(
            {"skipped": "no kept trajectory has a reply to learn"}, {"student_adapter": None}
        )
    out = _train_student(ctx, "student", records, system_prompt)
    out.state = {"student_adapter": out.state["student_adapter"]}
    return out


def train_cot(state: DistillState, ctx: DistillContext, rnd: int) -> StageOutput:
    """The CoT baseline: SFT of the student on the teacher's correct CoT answers, no tools."""
    if not ctx.config.cot_baseline:
        return StageOutput({"skipped": "cot_baseline is off"}, {"cot_adapter": None})
    correct = [r for r in _stage_rows(ctx, "teacher", "cot") if r.verdict == "correct"]
    records = sft_records_from(correct)
    if not records:
        return StageOutput({"skipped": "no correct teacher CoT answer"}, {"cot_adapter": None})
    out = _train_student(ctx, "student_cot", records, COT_SYSTEM_PROMPT)
    out.state = {"cot_adapter": out.state["student_cot_adapter"]}
    return out


def _eval_agent(
    ctx: DistillContext, role: str, engine: Engine, candidates: int = 1, stage: str = "eval"
) -> StageOutput:
    cfg = ctx.config
    items = ctx.tasks("heldout")
    run_cfg = cfg.teacher_agent if role == "teacher" else cfg.student_agent
    extra = {}
    if candidates > 1:
        extra = {
            "candidates": candidates,
            "candidate_temperature": cfg.self_consistency.temperature,
        }
    episodes = run_agents(
        ctx,
        engine,
        [i.content["question"] for i in items],
        _loop_settings(run_cfg, cfg.seed + 1, **extra),
        desc=f"eval {role}",
    )
    rows = [
        _episode_row(ctx, item, ep, role, stage, engine.fingerprint)
        for item, ep in zip(items, episodes, strict=True)
    ]
    return StageOutput({"label": EVALS[stage][2], **_accuracy(rows)}, add=rows)


def eval_student_base(state: DistillState, ctx: DistillContext, rnd: int) -> StageOutput:
    """The student agent before any training."""
    return _eval_agent(
        ctx, "student_base", ctx.with_adapter("student", None), stage="eval_student_base"
    )


def eval_teacher(state: DistillState, ctx: DistillContext, rnd: int) -> StageOutput:
    """The teacher agent (no prefix: the same loop the student runs)."""
    if not ctx.config.eval_teacher:
        return StageOutput({"skipped": "eval_teacher is off"})
    return _eval_agent(ctx, "teacher", ctx.engine("teacher"), stage="eval_teacher")


def eval_student(state: DistillState, ctx: DistillContext, rnd: int) -> StageOutput:
    """The distilled student agent."""
    adapter = state.get("student_adapter")
    if adapter is None:
        return StageOutput({"skipped": "the student was not trained"})
    return _eval_agent(ctx, "student", ctx.with_adapter("student", adapter), stage="eval_student")


def eval_student_sc(state: DistillState, ctx: DistillContext, rnd: int) -> StageOutput:
    """The distilled student with self-consistent action generation."""
    adapter = state.get("student_adapter")
    if adapter is None:
        return StageOutput({"skipped": "the student was not trained"})
    engine = ctx.with_adapter("student", adapter)
    n = ctx.config.self_consistency.candidates
    return _eval_agent(ctx, "student_sc", engine, candidates=n, stage="eval_student_sc")


def eval_cot(state: DistillState, ctx: DistillContext, rnd: int) -> StageOutput:
    """The CoT-distilled student, answering without tools."""
    adapter = state.get("cot_adapter")
    if adapter is None:
        return StageOutput({"skipped": "no CoT baseline was trained"})
    engine = ctx.with_adapter("student", adapter)
    rows = _cot_rows(ctx, engine, ctx.tasks("heldout"), "student_cot", "eval_cot")
    return StageOutput({"label": EVALS["eval_cot"][2], **_accuracy(rows)}, add=rows)


def _eval_closed(ctx: DistillContext, role: str, engine: Engine, stage: str) -> StageOutput:
    rows = _cot_rows(ctx, engine, ctx.tasks("heldout"), role, stage)
    return StageOutput({"label": EVALS[stage][2], **_accuracy(rows)}, add=rows)


def eval_student_closed(state: DistillState, ctx: DistillContext, rnd: int) -> StageOutput:
    """The base student without tools (chain of thought): where tools are needed."""
    if not ctx.config.closed_book:
        return StageOutput({"skipped": "closed_book is off"})
    engine = ctx.with_adapter("student", None)
    return _eval_closed(ctx, "student_base_cot", engine, "eval_student_closed")


def eval_teacher_closed(state: DistillState, ctx: DistillContext, rnd: int) -> StageOutput:
    """The teacher without tools (chain of thought)."""
    if not ctx.config.closed_book:
        return StageOutput({"skipped": "closed_book is off"})
    return _eval_closed(ctx, "teacher_cot", ctx.engine("teacher"), "eval_teacher_closed")


#: The stages, in order.
STAGES = [
    ("setup", setup),
    ("write_facts", write_facts),
    ("teacher_cot", teacher_cot),
    ("teacher_agent", teacher_agent),
    ("filter", filter_trajectories),
    ("train_student", train_student),
    ("train_cot", train_cot),
    ("eval_student_closed", eval_student_closed),
    ("eval_teacher_closed", eval_teacher_closed),
    ("eval_student_base", eval_student_base),
    ("eval_teacher", eval_teacher),
    ("eval_student", eval_student),
    ("eval_student_sc", eval_student_sc),
    ("eval_cot", eval_cot),
]


def build_graph() -> StateGraph:
    """The distillation graph (uncompiled): the stages in a line."""
    graph = StateGraph(DistillState, context_schema=DistillContext)
    add_stage_chain(graph, START, STAGES, END)
    return graph


# ---------------------------------------------------------------------------- running


class AgentDistillation(SchemeRun):
    """An agent-distillation run: create, run (resumably), inspect.

    Example:
        >>> run = AgentDistillation.create(AgentDistillJob(), Workspace.resolve("ws"))
        >>> run.run()
        >>> run.scores()   # {"student_base": 0.0, "teacher": 0.3, "student": 0.1, ...}
        >>> run.kept()     # the teacher trajectories the student was trained on
    """

    scheme = "agent-distill"
    job = AgentDistillJob
    trained_roles = ("student",)
    report_section = SECTION

    def _build(
        self,
        *,
        progress: bool = True,
        loader: Callable[[str], Engine] | None = None,
        corpus: Callable[[], Corpus | None] | None = None,
    ) -> tuple[DistillContext, StateGraph, int]:
        context = DistillContext(
            self.config,
            self.store,
            self.workspace,
            self.run_id,
            progress=progress,
            loader=loader,
            corpus_factory=corpus,
        )
        return context, build_graph(), len(STAGES)

    @classmethod
    def check(cls, config: AgentDistillJob) -> None:
        """Bad task files, a missing corpus package or no sandbox fail here, before a run
        exists (each is one sentence on the command line)."""
        from sandbox.executor import UNAVAILABLE_MESSAGE, SandboxUnavailable, isolation_backend
        from tools.retrieval import builtin_embedding_dir, wiki_summaries_path

        load_tasks(config)
        builtin_embedding_dir()
        wiki_summaries_path()
        if isolation_backend() == "none":
            raise SandboxUnavailable(UNAVAILABLE_MESSAGE)

    def run(self, until: str | None = None) -> Run:
        """Run to the end, or pause after stage ``until``; resumes where it stopped."""
        return self._run_until(until, [n for n, _ in STAGES])

    def scores(self) -> dict[str, float]:
        """Held-out accuracy per evaluated agent (``student_base``, ``teacher``, ``student``...)."""
        found = {}
        for stage in self.store.stages(self.run_id):
            accuracy = (stage.metrics or {}).get("accuracy")
            if stage.name in EVALS and stage.status == "finished" and accuracy is not None:
                found[EVALS[stage.name][0]] = accuracy
        return found

    def kept(self) -> list[Trajectory]:
        """The teacher trajectories the filter kept (the student's training data)."""
        return [r for r in _stage_rows(self.context, "teacher", "agent") if r.meta.get("kept")]
