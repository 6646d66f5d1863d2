"""Strategy teaching (arXiv 2408.07238) as a LangGraph graph: a teacher's advice, retrieved.

A black-box teacher makes a small student behave like itself in customer service — not by
changing weights but by writing short strategies into an auditable library that the student
retrieves into its prompt. Every role (teacher, student, customer simulator, judge) is just a
chat endpoint. The stages, each committed atomically:

1. **setup**: training tasks per round from τ²-bench's train split, held-out ones from its test
   split (retail or airline: a policy, a database and customer scenarios with gold actions).
2. per round, **scenarios**: the customer simulator talks to the student (with the strategies it
   retrieves); the judge compares each student turn with the teacher's reply to the same
   conversation, and turns that fall short — the judge prefers the teacher's reply, or the
   rules find a policy violation or a failed tool call — become scenarios (the conversation up
   to the customer's message). The teacher writes a few extra scenarios on topics the policy covers.
   The teacher's own reply to every scenario is stored with it.
3. per round, **refine**: for each scenario, repeat: the student replies with the strategies it
   retrieves, the judge compares that reply with the teacher's; if the student is not yet as
   good, the teacher writes new strategies or edits the ones the student saw. It stops when the
   judge rates the student at least as good as the teacher, or after ``max_iterations``.
   Strategies are stored as *proposed*, with their scenario, the teacher, the round, and the
   judge's preference for the student over the teacher before and after.
4. **generic**: the generic-guidance baseline: the teacher writes as many strategies as the
   library holds from the policy alone (no scenario, no student reply) into a library of the
   run's own, retrieved the same way.
5. **finetune**: the fine-tuned baseline: the student's LoRA SFT on the teacher's replies to the
   run's scenarios (the same conversations the strategies were written for).
6. **eval_dialogues**: on held-out tasks, full dialogues (until the customer ends them, or
   ``evaluation.max_turns``) of the student alone, with generic guidance, fine-tuned, with the
   learned strategies, the teacher, and (transfer) a second student with and without the
   library: τ² task success against the gold actions, action recall and policy violations,
   each with a 95% interval and, against the student alone, a paired test.
7. **eval_judge**: on held-out scenarios (the first customer turns of the held-out dialogues),
   the judge — another model than the teacher by default — compares next replies: each variant
   of the student against the student alone and against the teacher, the learned strategies
   against generic guidance and against fine-tuning, the transfer student with strategies
   against alone; win rates with 95% intervals and a sign test.

Only audited (approved or edited) strategies reach a prompt, unless the run is a training run
(``use_proposed``, the default here), which also uses the proposed ones it is refining.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.graph import END, START, StateGraph

from agents.config import ConfigError
from agents.episodes.dialogue import (
    GREETING,
    Dialogue,
    conversation_text,
    next_replies,
    reply_text,
    run_dialogues,
)
from agents.models.base import ChatRequest, Engine, Message
from agents.schemes.base import (
    SchemeRun,
    StageOutput,
    add_stage_chain,
    ask_parsed,
    stage_node,
)
from agents.schemes.strategy_teaching.baselines import finetune, generic
from agents.schemes.strategy_teaching.config import StrategyTeachingJob
from agents.schemes.strategy_teaching.context import (
    AGENTS,
    COMPARISONS,
    TeachingContext,
    TeachingState,
    judge,
)
from agents.schemes.strategy_teaching.report import SECTION
from agents.schemes.strategy_teaching.rules import (
    PROMPTS,
    normalised,
    parse_strategies,
    retrieval_query,
    system_prompt,
    too_specific,
)
from agents.schemes.strategy_teaching.scores import dialogue_scores, win_rate
from agents.store import Item, Run, Trajectory
from strategies import StrategyLibrary
from tools.service import DomainUnavailable, ServiceDomain, load_domain
from tools.service.checks import policy_violations, score_actions

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- stages


def setup(state: TeachingState, ctx: TeachingContext, rnd: int) -> StageOutput:
    """Choose each round's training tasks and the held-out tasks (seeded)."""
    import random

    cfg = ctx.config
    domain = ctx.domain()
    train = [t.id for t in domain.split("train")]
    heldout = [t.id for t in domain.split("test")]
    random.Random(cfg.seed).shuffle(train)
    random.Random(cfg.seed + 1).shuffle(heldout)
    per_round = [
        [train[(r * cfg.tasks.train + i) % len(train)] for i in range(cfg.tasks.train)]
        for r in range(cfg.rounds)
    ]
    chosen = heldout[: cfg.tasks.heldout]
    items = [
        Item(run_id=ctx.run_id, kind="service_task", round=r + 1, content={"task": t}, source=s)
        for r, ids in enumerate(per_round)
        for t, s in ((t, "train") for t in ids)
    ] + [
        Item(run_id=ctx.run_id, kind="service_task", content={"task": t}, source="test")
        for t in chosen
    ]
    metrics = {
        "domain": domain.name,
        "train_tasks": len({t for ids in per_round for t in ids}),
        "heldout_tasks": len(chosen),
        "library": ctx.library().name,
        "library_size": ctx.library().count(),
    }
    update = {"train": per_round, "heldout": chosen, "rounds": cfg.rounds}
    return StageOutput(metrics, update, add=items)


def _turn_of(dialogue: Dialogue, index: int) -> int:
    """The agent turn a message index belongs to."""
    return max((t for t, start in enumerate(dialogue.turns) if start <= index), default=0)


def _turn_problems(ctx: TeachingContext, dialogue: Dialogue) -> dict[int, list[str]]:
    """Rule-detected problems per agent turn: policy violations and failed tool calls."""
    problems: dict[int, list[str]] = {}
    for v in policy_violations(ctx.domain(), dialogue.messages):
        problems.setdefault(_turn_of(dialogue, v.turn), []).append(f"{v.rule}: {v.detail}")
    for i, m in enumerate(dialogue.messages):
        if m["role"] == "tool" and str(m.get("content", "")).startswith("Error"):
            problems.setdefault(_turn_of(dialogue, i), []).append(
                f"tool error: {m['content'][:200]}"
            )
    return problems


def scenarios(state: TeachingState, ctx: TeachingContext, rnd: int) -> StageOutput:
    """The student's weak turns with the customer simulator, plus teacher-written scenarios.

    A student turn falls short when the judge prefers the teacher's reply to the same
    conversation, or when the rules find a problem in it (a policy violation, a failed tool
    call); rule-detected ones come first, then the judge's clearest losses.
    """
    cfg = ctx.config
    domain, library = ctx.domain(), ctx.library()
    tasks = ctx.tasks(state["train"][rnd - 1])
    dialogues = run_dialogues(
        ctx.engine("student"),
        ctx.engine("customer"),
        domain,
        tasks,
        guide=ctx.guide(),
        settings=ctx.settings(),
        progress=ctx.progress,
        desc=f"round {rnd} student dialogues",
    )
    # Every student turn: its prefix (ending with the customer's message) and its first reply,
    # against what the teacher would have said there.
    turns = [(d, t, start) for d in dialogues for t, start in enumerate(d.turns)]
    prefixes = [d.messages[:start] for d, _, start in turns]
    replies = [d.messages[start] for d, _, start in turns]
    teacher = next_replies(
        ctx.engine("teacher"), domain, prefixes, None, ctx.settings(), ctx.progress
    )
    shares = judge(ctx, prefixes, replies, teacher)
    problems = {id(d): _turn_problems(ctx, d) for d in dialogues}
    flagged = []
    for k, ((d, t, _), share) in enumerate(zip(turns, shares, strict=True)):
        rules = problems[id(d)].get(t, [])
        if rules or (share is not None and share < 0.5):
            flagged.append((0 if rules else 1, share if share is not None else 1.0, k, rules))
    flagged.sort(key=lambda f: (f[0], f[1]))
    flagged = flagged[: cfg.scenarios.max_per_round]

    chosen = [prefixes[k] for _, _, k, _ in flagged]
    metas: list[dict[str, Any]] = [
        {
            "source": "failure",
            "task": turns[k][0].task.id,
            "turn": turns[k][1],
            "student_reply": reply_text(replies[k]),
            "student_preference": shares[k],
            "rule_problems": rules,
            "teacher_reply": reply_text(teacher[k]),
            "teacher_message": teacher[k],
        }
        for _, _, k, rules in flagged
    ]
    written = teacher_scenarios(ctx, rnd)
    if written:
        opened = [
            [{"role": "assistant", "content": GREETING}, {"role": "user", "content": text}]
            for text, _ in written
        ]
        guide = ctx.guide()
        student_now = next_replies(
            ctx.engine("student"), domain, opened, [guide(p) for p in opened], ctx.settings()
        )
        teacher_now = next_replies(
            ctx.engine("teacher"), domain, opened, None, ctx.settings(), ctx.progress
        )
        for (_, topic), prefix, mine, theirs in zip(
            written, opened, student_now, teacher_now, strict=True
        ):
            chosen.append(prefix)
            metas.append(
                {
                    "source": "teacher",
                    "topic": topic,
                    "task": None,
                    "student_reply": reply_text(mine),
                    "teacher_reply": reply_text(theirs),
                    "teacher_message": theirs,
                }
            )
    ids = [
        library.add_scenario(
            prefix,
            source=meta["source"],
            run_id=ctx.run_id,
            round=rnd,
            domain=domain.name,
            task_id=meta.get("task"),
            meta=meta,
            origin=f"{ctx.run_id}/r{rnd}/scenario{k}",
        ).id
        for k, (prefix, meta) in enumerate(zip(chosen, metas, strict=True))
    ]

    per_dialogue: dict[int, list[float | None]] = {}
    for (d, _, _), share in zip(turns, shares, strict=True):
        per_dialogue.setdefault(id(d), []).append(share)
    rows = [
        Trajectory(
            run_id=ctx.run_id,
            round=rnd,
            role="student",
            stage="scenarios",
            model=cfg.student,
            messages=d.messages,
            tools=domain.schemas(),
            meta={
                **d.summary(),
                "guidance": d.guidance,
                "preference": per_dialogue.get(id(d), []),
                "problems": {str(t): p for t, p in problems[id(d)].items()},
            },
        )
        for d in dialogues
    ]
    judged = [x for x in shares if x is not None]
    metrics = {
        "dialogues": len(dialogues),
        "student_turns": len(turns),
        "judged": len(judged),
        "student_preference": _mean(judged),
        "shortfalls": len(flagged),
        "rule_shortfalls": sum(f[0] == 0 for f in flagged),
        "teacher_scenarios": len(written),
        "scenarios": len(ids),
    }
    return StageOutput(metrics, {"scenarios": ids}, add=rows)


def teacher_scenarios(ctx: TeachingContext, rnd: int) -> list[tuple[str, str]]:
    """(customer message, topic) for this round's teacher-written scenarios."""
    n = ctx.config.scenarios.teacher_scenarios
    domain = ctx.domain()
    topics = [t.strip() for t in PROMPTS.get(f"topics_{domain.name}", "").splitlines() if t.strip()]
    if not n or not topics:
        return []
    chosen = [topics[((rnd - 1) * n + i) % len(topics)] for i in range(n)]
    requests = [
        ChatRequest(
            messages=[
                {"role": "system", "content": system_prompt("scenario_system", domain)},
                {"role": "user", "content": PROMPTS["scenario_user"].format(topic=topic)},
            ],
            temperature=0.7,
            max_tokens=ctx.config.dialogue.customer_max_tokens,
            seed=ctx.config.seed + rnd * 100 + i,
        )
        for i, topic in enumerate(chosen)
    ]
    results = ctx.engine("teacher").generate(requests, progress=ctx.progress)
    return [
        (r.text.strip().strip('"'), topic)
        for r, topic in zip(results, chosen, strict=True)
        if r.text.strip()
    ]


@dataclass
class _Refining:
    """One scenario going through the refinement loop."""

    scenario_id: int
    prefix: list[Message]
    teacher: Message
    history: list[dict[str, Any]]
    touched: list[int]  # strategies written or edited for it in the last iteration
    closed: bool = False


def refine(state: TeachingState, ctx: TeachingContext, rnd: int) -> StageOutput:
    """Student vs teacher on each scenario until the judge finds the student as good."""
    cfg = ctx.config
    domain, library = ctx.domain(), ctx.library()
    guide = ctx.guide()
    author = f"teacher:{cfg.teacher}"
    work = []
    for sid in state.get("scenarios", []):
        row = library.scenario(sid)
        teacher = row.meta.get("teacher_message") or {"role": "assistant", "content": ""}
        work.append(_Refining(sid, list(row.messages), teacher, [], []))
    # What this stage adds to the library is keyed by run, round, scenario and iteration
    # (``origin``): re-run after a crash, it gets back what its first attempt added instead of a
    # copy, and a text already in the library is linked, never added twice.
    ours = f"{ctx.run_id}/r{rnd}/s"
    edited: set[int] = set()
    known = {normalised(s.text): s.id for s in library.strategies()}
    policy, specific = domain.policy, 0
    for it in range(cfg.refine.max_iterations + 1):
        active = [w for w in work if not w.closed]
        if not active:
            break
        guidance = [guide(w.prefix) for w in active]
        student = next_replies(
            ctx.engine("student"), domain, [w.prefix for w in active], guidance, ctx.settings()
        )
        shares = judge(ctx, [w.prefix for w in active], student, [w.teacher for w in active])
        writing = []
        for w, g, reply, share in zip(active, guidance, student, shares, strict=True):
            if w.touched and share is not None:
                library.record_scores(w.touched, score_after=share)
            w.history.append(
                {
                    "iteration": it,
                    "strategies": [sid for sid, _ in g],
                    "student_reply": reply_text(reply),
                    "student_preference": share,
                }
            )
            w.touched = []
            if share is not None and share >= 0.5:  # at least as good as the teacher
                w.closed = True
            elif it < cfg.refine.max_iterations and share is not None:
                writing.append((w, g, reply, share))
        if not writing:
            continue
        writer_system = system_prompt("writer_system", domain, max_new=cfg.refine.max_new)
        requests = [
            ChatRequest(
                messages=[
                    {"role": "system", "content": writer_system},
                    {
                        "role": "user",
                        "content": PROMPTS["writer_user"].format(
                            conversation=conversation_text(w.prefix),
                            student=reply_text(reply),
                            teacher=reply_text(w.teacher),
                            strategies="\n".join(f"[{i}] {text}" for i, text in g) or "(none)",
                        ),
                    },
                ],
                max_tokens=cfg.refine.writer_max_tokens,
                temperature=cfg.refine.writer_temperature,
                seed=cfg.seed + 1000 * rnd + 10 * it + w.scenario_id,
            )
            for w, g, reply, _ in writing
        ]
        written, _, _ = ask_parsed(
            ctx.engine("teacher"), requests, parse_strategies, 1, ctx.progress
        )
        for (w, g, _reply, share), out in zip(writing, written, strict=True):
            if out is None:
                w.history[-1]["writer"] = "malformed"
                continue
            kept = {
                kind: [x for x in out[kind] if not too_specific(x["strategy"], w.prefix, policy)]
                for kind in ("new", "edit")
            }
            dropped = len(out["new"]) + len(out["edit"]) - len(kept["new"]) - len(kept["edit"])
            if dropped:
                w.history[-1]["too_specific"] = dropped
                specific += dropped
            out = kept
            seen = {i for i, _ in g}
            for j, new in enumerate(out["new"][: cfg.refine.max_new]):
                same = known.get(normalised(new["strategy"]))
                if same is not None:  # written before: link this scenario to it instead
                    existing = library.get(same)
                    if existing.status != "rejected":
                        library.revise(
                            same,
                            existing.text,
                            author=author,
                            scenario_ids=[w.scenario_id],
                        )
                        w.touched.append(same)
                    continue
                strategy = library.add(
                    new["situation"] or retrieval_query(w.prefix, 1)[:200],
                    new["strategy"],
                    author=author,
                    scenario_ids=[w.scenario_id],
                    run_id=ctx.run_id,
                    teacher=cfg.teacher,
                    round=rnd,
                    score_before=share,
                    teacher_score=1 - share,
                    domain=domain.name,
                    origin=f"{ours}{w.scenario_id}/i{it}/n{j}",
                )
                w.touched.append(strategy.id)
                known[normalised(strategy.text)] = strategy.id
            for change in out["edit"]:
                if change["id"] not in seen:  # only what the student saw may be edited
                    continue
                library.revise(
                    change["id"],
                    change["strategy"],
                    author=author,
                    reason=f"round {rnd}, scenario {w.scenario_id}: judge preferred the teacher",
                    status="proposed",  # a changed strategy needs auditing again
                    scenario_ids=[w.scenario_id],
                )
                w.touched.append(change["id"])
                edited.add(change["id"])
            w.history[-1]["wrote"] = list(w.touched)
    rows = [
        Trajectory(
            run_id=ctx.run_id,
            round=rnd,
            role="refine",
            stage="refine",
            model=cfg.student,
            messages=w.prefix,
            reward=1.0 if w.closed else 0.0,
            meta={
                "scenario": w.scenario_id,
                "closed": w.closed,
                "history": w.history,
            },
        )
        for w in work
    ]

    def preference(at: int) -> float | None:
        return _mean(
            [
                h["student_preference"]
                for w in work
                if w.history
                if (h := w.history[at])["student_preference"] is not None
            ]
        )

    metrics = {
        "scenarios": len(work),
        "closed": sum(w.closed for w in work),
        "iterations": sum(len(w.history) for w in work),
        # Counted by origin, not by this attempt's adds: a re-run after a crash finds what its
        # first attempt wrote already there (and its student may already be guided by it).
        "new_strategies": sum((s.origin or "").startswith(ours) for s in library.strategies()),
        "edited_strategies": len(edited),
        "too_specific": specific,  # written for one customer only: dropped
        # the judge's preference for the student over the teacher, first and last try
        "student_preference_first": preference(0),
        "student_preference_last": preference(-1),
        "library_size": library.count(),
    }
    return StageOutput(metrics, {}, add=rows)


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _held_out_agents(cfg: StrategyTeachingJob) -> list[str]:
    names = ["student"]
    if cfg.evaluation.generic:
        names.append("student_generic")
    if cfg.evaluation.finetune:
        names.append("student_finetuned")
    names.append("student_strategies")
    if cfg.eval_teacher:
        names.append("teacher")
    if cfg.transfer_student:
        names += ["transfer", "transfer_strategies"]
    return names


def _agent_engine(ctx: TeachingContext, state: TeachingState, role: str) -> Engine:
    return ctx.engine(role, state.get("student_finetuned_adapter"))


def _ready(state: TeachingState, name: str) -> bool:
    """A held-out agent can run: the fine-tuned one only once it was trained."""
    return name != "student_finetuned" or bool(state.get("student_finetuned_adapter"))


def eval_dialogues(state: TeachingState, ctx: TeachingContext, rnd: int) -> StageOutput:
    """Full held-out dialogues of every agent: task success, recall and policy violations."""
    cfg = ctx.config
    domain = ctx.domain()
    tasks = ctx.tasks(state["heldout"])
    outcomes: dict[str, dict[str, dict[str, float]]] = {}
    details: dict[str, dict[str, Any]] = {}
    rows = []
    for name in (n for n in _held_out_agents(cfg) if _ready(state, n)):
        role, guidance = AGENTS[name]
        dialogues = run_dialogues(
            _agent_engine(ctx, state, role),
            ctx.engine("customer"),
            domain,
            tasks,
            guide=ctx.agent_guide(guidance),
            settings=ctx.settings(heldout=True),
            progress=ctx.progress,
            desc=f"held-out {name}",
        )
        outcomes[name] = {}
        for k, d in enumerate(dialogues):
            score = score_actions(d.task, d.messages, domain.write_tools)
            found = policy_violations(domain, d.messages)
            outcomes[name][f"{k}:{d.task.id}"] = {
                "success": float(score.success),
                "action_recall": score.recall,
                "dialogues_with_violations": float(bool(found)),
                "violations": len(found),
            }
            rows.append(
                Trajectory(
                    run_id=ctx.run_id,
                    round=rnd,
                    role=name,
                    stage="eval_dialogues",
                    model=cfg.role_model(role),
                    messages=d.messages,
                    tools=domain.schemas(),
                    reward=float(score.success),
                    verdict="correct" if score.success else "incorrect",
                    meta={
                        **d.summary(),
                        "guidance": d.guidance,
                        "recall": score.recall,
                        "extra_writes": score.extra_writes,
                        "violations": [f"{v.rule}: {v.detail}" for v in found],
                    },
                )
            )
        n = len(dialogues) or 1
        ended = Counter(d.ended or "open" for d in dialogues)
        details[name] = {
            "turns": round(sum(len(d.turns) for d in dialogues) / n, 2),
            "tool_calls": round(sum(d.summary()["tool_calls"] for d in dialogues) / n, 2),
            "tool_errors": sum(d.tool_errors for d in dialogues),
            "ended": dict(ended),
        }
    metrics: dict[str, Any] = dialogue_scores(outcomes)
    for name, extra in details.items():
        metrics.setdefault(name, {}).update(extra)
    metrics["_judge_is_teacher"] = cfg.judge_is_teacher
    return StageOutput(metrics, {}, add=rows)


def eval_judge(state: TeachingState, ctx: TeachingContext, rnd: int) -> StageOutput:
    """Judged win rates of next replies on held-out scenarios, with intervals."""
    cfg = ctx.config
    domain = ctx.domain()
    source = "teacher" if cfg.eval_teacher else "student"
    held = ctx.store.trajectories(ctx.run_id, role=source, stage="eval_dialogues")
    prefixes: list[list[Message]] = []
    for row in held:
        starts = [
            i
            for i, m in enumerate(row.messages)
            if i and row.messages[i - 1]["role"] == "user" and m["role"] == "assistant"
        ]
        prefixes += [list(row.messages[:i]) for i in starts[: cfg.heldout_turns]]
    agents = [n for n in _held_out_agents(cfg) if _ready(state, n)]
    replies: dict[str, list[Message]] = {}
    for name in agents:
        role, guidance = AGENTS[name]
        guide = ctx.agent_guide(guidance)
        replies[name] = next_replies(
            _agent_engine(ctx, state, role),
            domain,
            prefixes,
            [guide(p) for p in prefixes] if guide else None,
            ctx.settings(heldout=True),
            ctx.progress,
        )
    metrics: dict[str, Any] = {"scenarios": len(prefixes), "judge": cfg.role_model("judge")}
    rows = []
    for comparison, (a, b) in COMPARISONS.items():
        if a not in replies or b not in replies or not prefixes:
            continue
        shares = judge(ctx, prefixes, replies[a], replies[b])
        metrics[comparison] = {
            **win_rate(shares, 2 if cfg.refine.both_orders else 1),
            "identical": sum(
                reply_text(x) == reply_text(y) for x, y in zip(replies[a], replies[b], strict=True)
            ),
        }
        for prefix, x, y, share in zip(prefixes, replies[a], replies[b], shares, strict=True):
            rows.append(
                Trajectory(
                    run_id=ctx.run_id,
                    round=rnd,
                    role=f"judge:{comparison}",
                    stage="eval_judge",
                    model=cfg.role_model("judge"),
                    messages=prefix,
                    reward=share,
                    meta={"a": reply_text(x), "b": reply_text(y)},
                )
            )
    metrics["_judge_is_teacher"] = cfg.judge_is_teacher
    return StageOutput(metrics, {}, add=rows)


# ---------------------------------------------------------------------------- graph


ROUND_STAGES: list[tuple[str, Any]] = [("scenarios", scenarios), ("refine", refine)]
#: After the rounds: the baselines, then the held-out evaluation.
EVAL_STAGES: list[tuple[str, Any]] = [
    ("generic", generic),
    ("finetune", finetune),
    ("eval_dialogues", eval_dialogues),
    ("eval_judge", eval_judge),
]


def _more_rounds(state: TeachingState) -> str:
    return "scenarios" if state.get("round", 0) < state.get("rounds", 1) else EVAL_STAGES[0][0]


def build_graph() -> StateGraph:
    """setup → (scenarios → refine) × rounds → generic → finetune → eval_dialogues → eval_judge.

    With no rounds, setup leads straight to the baselines and the evaluation of the library as
    it stands.
    """
    first = EVAL_STAGES[0][0]
    graph = StateGraph(TeachingState, context_schema=TeachingContext)
    graph.add_node("setup", stage_node("setup", setup))
    graph.add_node("scenarios", stage_node("scenarios", scenarios, opens_round=True))
    graph.add_node("refine", stage_node("refine", refine))
    graph.add_edge(START, "setup")
    # a (first or next) round, or the baselines and the held-out evaluation
    graph.add_conditional_edges("setup", _more_rounds, ["scenarios", first])
    graph.add_edge("scenarios", "refine")
    graph.add_conditional_edges("refine", _more_rounds, ["scenarios", first])
    graph.add_node(first, stage_node(first, EVAL_STAGES[0][1]))
    add_stage_chain(graph, first, EVAL_STAGES[1:], END)
    return graph


# ---------------------------------------------------------------------------- running


class StrategyTeaching(SchemeRun):
    """A strategy-teaching run: create, run (resumably), inspect.

    Example:
        >>> run = StrategyTeaching.create(StrategyTeachingJob(rounds=1), Workspace.resolve("ws"))
        >>> run.run()
        >>> run.scores()["strategies_vs_alone"]["win_rate"]
        >>> run.library.strategies(statuses={"proposed"})   # what to audit: `agents audit`
    """

    scheme = "strategy-teaching"
    job = StrategyTeachingJob
    trained_roles = ()
    report_section = SECTION

    def _build(
        self,
        *,
        progress: bool = True,
        loader: Callable[[str], Engine] | None = None,
        domain: Callable[[], ServiceDomain] | None = None,
        library: Callable[[str], StrategyLibrary] | None = None,
    ) -> tuple[TeachingContext, StateGraph, int]:
        context = TeachingContext(
            self.config,
            self.store,
            self.workspace,
            self.run_id,
            progress=progress,
            loader=loader,
            domain_factory=domain,
            library_factory=library,
        )
        return context, build_graph(), 1 + 2 * self.config.rounds + len(EVAL_STAGES)

    @classmethod
    def check(cls, config: StrategyTeachingJob) -> None:
        try:
            domain = load_domain(config.tasks.domain, config.tasks.data_dir)
        except (DomainUnavailable, ValueError, FileNotFoundError) as err:
            raise ConfigError(str(err)) from None
        for split in ("train", "test"):
            if not domain.split(split):
                raise ConfigError(f"the {domain.name} domain has no {split} tasks")

    def run(self, until: str | None = None) -> Run:
        """Run to the end, or pause after the first stage named ``until``."""
        names = {"setup", "scenarios", "refine", *(n for n, _ in EVAL_STAGES)}
        return self._run_until(until, sorted(names))

    @property
    def library(self) -> StrategyLibrary:
        """The run's strategy library (shared by runs that name the same library)."""
        return self.context.library()

    def scores(self) -> dict[str, Any]:
        """Held-out results: per agent (success, violations, ...) and per judged comparison."""
        found: dict[str, Any] = {}
        for stage in self.store.stages(self.run_id):
            if stage.name in ("eval_dialogues", "eval_judge") and stage.status == "finished":
                found.update(
                    {k: v for k, v in stage.metrics.items() if isinstance(v, dict) and k[0] != "_"}
                )
        return found
