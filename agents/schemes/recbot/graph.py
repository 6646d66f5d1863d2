"""The RecBot distillation graph: simulated users, teacher episodes, a fine-tuned student.

Stages, in a line (each committed atomically, the graph checkpointed after each):

1. ``setup``: the catalog is built into the workspace (SQL tables, Chroma item vectors, ALS on
   the training users' ratings only); held-out and training users get one goal each, the
   scenarios (single, multi-round, drift) assigned in turn;
2. ``teacher_episodes``: the teacher RecBot (parser + planner) on every training goal;
3. ``filter``: pick the teacher turns the student learns from: with ``keep: verified`` (the
   default) every parse that matches the simulator's ground truth exactly and every plan that
   applies its preferences exactly (:func:`~agents.schemes.recbot.episode.plan_follows`), from
   any episode; with ``keep: successful`` (RecBot's own filter) the valid parses and finished
   plans of the episodes that reached their target;
4. ``train_student``: LoRA SFT of the student on the parser's JSON and the planner's tool calls
   (loss on assistant turns only);
5. ``eval_popularity``, ``eval_collaborative``, ``eval_retrieval``, ``eval_teacher``,
   ``eval_student_base``, ``eval_student``: every system on the same held-out goals with the same
   simulator, scored by pass rate (target in the top K within the turns), NDCG@K, CSR@K,
   first-turn recall, rounds, parser JSON validity and constraint F1.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from agents.config import ConfigError
from agents.datasets import sft_records_from_rows
from agents.eval.stats import accuracy_estimate
from agents.models.base import Engine
from agents.models.cached import CachedEngine
from agents.schemes.base import RoleContext, SchemeRun, StageOutput, add_stage_chain, train_role
from agents.schemes.recbot.config import RecBotJob
from agents.schemes.recbot.episode import (
    PROMPTS,
    STUDENT_PARSER_PREFIX,
    Baseline,
    RecBot,
    RecEpisode,
    System,
    plan_follows,
    run_episodes,
)
from agents.schemes.recbot.report import EVALS, SECTION
from agents.schemes.recbot.users import Goal, make_goals
from agents.store import Item, Run, Trajectory
from tools.catalog import PLANNER_TOOLS, Catalog, CatalogData, load_catalog_files, load_movielens

log = logging.getLogger(__name__)


class RecBotState(TypedDict, total=False):
    student_adapter: str | None


@dataclass
class RecBotContext(RoleContext):
    """Runtime context: config, store, engines (teacher, student, simulator) and the catalog."""

    config: RecBotJob
    catalog_factory: Callable[[set[str]], Catalog] | None = None
    _catalog: Catalog | None = None
    _data: CatalogData | None = None

    def data(self) -> CatalogData:
        if self._data is None:
            cfg = self.config.catalog
            if cfg.items is not None and cfg.interactions is not None:
                self._data = load_catalog_files(cfg.items, cfg.interactions)
            else:
                self._data = load_movielens()
        return self._data

    def split(self) -> tuple[list[str], list[str]]:
        """Users in seeded order: the held-out pool (users a held-out goal may come from; none
        of their ratings trains the collaborative model) and the training pool."""
        users = sorted({r.user for r in self.data().ratings})
        random.Random(self.config.seed).shuffle(users)
        # a user without a usable target is skipped, so the pool is generous
        cut = min(len(users), self.config.users.heldout * 3)
        return users[:cut], users[cut:]

    def catalog(self) -> Catalog:
        """The built catalog; its collaborative model never sees a held-out user's ratings."""
        if self._catalog is None:
            heldout_users = set(self.split()[0])
            if self.catalog_factory is not None:
                self._catalog = self.catalog_factory(heldout_users)
            else:
                data = self.data()
                self._catalog = Catalog.build(
                    data,
                    self.workspace.root / "catalog",
                    chroma_dir=self.workspace.chroma_dir,
                    train_ratings=[r for r in data.ratings if r.user not in heldout_users],
                    factors=self.config.catalog.factors,
                    seed=self.config.seed,
                )
        return self._catalog

    def goals(self, kind: str) -> list[Item]:
        return [i for i in self.store.items(self.run_id) if i.kind == kind]

    def engine(self, role: str) -> CachedEngine:
        if role == "simulator" and self.config.simulator is None and role not in self.engines:
            # the teacher's model plays the user too: one copy of the weights, its own ledger
            teacher = super().engine("teacher")
            self.engines[role] = CachedEngine(
                teacher.inner, self.store, run_id=self.run_id, role="simulator"
            )
        return super().engine(role)


def _goal(item: Item) -> Goal:
    return Goal.from_dict(item.content)


# ---------------------------------------------------------------------------- stages


def setup(state: RecBotState, ctx: RecBotContext, rnd: int) -> StageOutput:
    """Build the catalog and plan one goal per training and held-out user."""
    cfg = ctx.config
    data = ctx.data()
    heldout_pool, train_pool = ctx.split()
    catalog = ctx.catalog()
    rows, found = [], {}
    for kind, pool, wanted in (
        ("heldout", heldout_pool, cfg.users.heldout),
        ("task", train_pool, cfg.users.train),
    ):
        goals: list[Goal] = []
        for n, user in enumerate(pool):
            if len(goals) == wanted:
                break
            scenario = cfg.users.scenarios[len(goals) % len(cfg.users.scenarios)]
            goals += make_goals(
                catalog,
                data.ratings,
                [user],
                scenario,
                seed=cfg.seed * 100_003 + n,
                max_turns=cfg.users.max_turns,
                min_history=cfg.users.min_history,
            )
        found[kind] = goals
        rows += [
            Item(
                run_id=ctx.run_id,
                kind=kind,
                content=goal.to_dict(),
                answer=goal.target,
                source=goal.scenario,
                status="active",
                meta={"turns": len(goal.turns)},
            )
            for goal in goals
        ]
    if not found["heldout"] or not found["task"]:
        raise ConfigError(
            "too few users with a usable target; lower users.min_history or use more users"
        )
    metrics = {
        "catalog": data.name,
        "items": len(data.items),
        "ratings": len(data.ratings),
        "omdb_matched": data.matched,
        "users": len(heldout_pool) + len(train_pool),
        "train_goals": len(found["task"]),
        "heldout_goals": len(found["heldout"]),
        **{
            f"heldout_{s}": sum(g.scenario == s for g in found["heldout"])
            for s in cfg.users.scenarios
        },
    }
    return StageOutput(metrics, {"student_adapter": None}, add=rows)


def _dialogue(episode: RecEpisode, catalog: Catalog) -> list[dict[str, Any]]:
    """The episode as a readable conversation: each command, then the feed shown."""
    messages: list[dict[str, Any]] = []
    for turn in episode.turns:
        feed = "\n".join(f"{n}. {catalog.by_id[i].line()}" for n, i in enumerate(turn.feed, 1))
        messages += [
            {"role": "user", "content": turn.command},
            {"role": "assistant", "content": feed or "(no film meets the constraints)"},
        ]
    return messages


def _rows(
    ctx: RecBotContext,
    items: list[Item],
    episodes: list[RecEpisode],
    role: str,
    stage: str,
    model: str,
) -> list[Trajectory]:
    catalog = ctx.catalog()
    return [
        Trajectory(
            run_id=ctx.run_id,
            item_id=item.id,
            role=role,
            stage=stage,
            model=model,
            messages=_dialogue(episode, catalog),
            final_answer=",".join(episode.turns[-1].feed) if episode.turns else None,
            verdict="correct" if episode.status == "satisfied" else "incorrect",
            reward=float(episode.status == "satisfied"),
            meta={"scenario": item.source, **episode.to_dict()},
        )
        for item, episode in zip(items, episodes, strict=True)
    ]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def episode_metrics(rows: list[Trajectory]) -> dict[str, Any]:
    """Pass rate, NDCG@K, CSR@K, first-turn recall (each with its interval and per-goal scores
    for paired tests), rounds, parser JSON validity and constraint F1; per scenario too."""
    metrics: dict[str, Any] = {"items": len(rows)}
    if not rows:
        return metrics

    def per_goal(rows_: list[Trajectory]) -> dict[str, dict[str, float]]:
        found: dict[str, dict[str, float]] = {
            "pass": {},
            "ndcg": {},
            "csr": {},
            "first_recall": {},
            "f1": {},
        }
        for r in rows_:
            key, turns, summary = str(r.item_id), r.meta["turns"], r.meta["summary"]
            found["pass"][key] = float(summary["passed"])
            found["ndcg"][key] = float(summary["ndcg"])
            found["csr"][key] = _mean([t["score"]["csr"] for t in turns]) or 0.0
            found["first_recall"][key] = float(turns[0]["score"]["recall"]) if turns else 0.0
            if summary["f1"]:
                found["f1"][key] = _mean(summary["f1"]) or 0.0
        return found

    for prefix, part in [("", rows)] + [
        (f"{s}_", [r for r in rows if r.meta["scenario"] == s])
        for s in sorted({r.meta["scenario"] for r in rows})
    ]:
        if not part:
            continue
        for name, scores in per_goal(part).items():
            if not scores:
                continue
            metrics[f"{prefix}{name}"] = sum(scores.values()) / len(scores)
            metrics[f"{prefix}{name}_interval"] = accuracy_estimate(scores).as_dict()
            metrics[f"_{prefix}{name}_scores"] = scores
        metrics[f"{prefix}items"] = len(part)
    metrics["scenarios"] = sorted({r.meta["scenario"] for r in rows})
    summaries = [r.meta["summary"] for r in rows]
    metrics["rounds"] = _mean([s["rounds"] for s in summaries])
    parses = sum(s["parses"] for s in summaries)
    if parses:
        metrics["json_valid"] = sum(s["valid_parses"] for s in summaries) / parses
        metrics["planner_incomplete"] = sum(s["planner_incomplete"] for s in summaries)
    metrics["voiced_by_cues"] = sum(s["voiced_by_cues"] for s in summaries)
    # the report's generic key: the pass rate is the accuracy of a recommender episode
    metrics["accuracy"] = metrics["pass"]
    metrics["interval"] = metrics["pass_interval"]
    metrics["_scores"] = metrics["_pass_scores"]
    return metrics


def _run(ctx: RecBotContext, system: System, items: list[Item], desc: str) -> list[RecEpisode]:
    cfg = ctx.config
    log.info("%s: %d episodes", desc, len(items))
    return run_episodes(
        [_goal(i) for i in items],
        system,
        catalog=ctx.catalog(),
        simulator=ctx.engine("simulator"),
        settings=cfg.episode.loop(cfg.seed),
        progress=ctx.progress,
    )


def teacher_episodes(state: RecBotState, ctx: RecBotContext, rnd: int) -> StageOutput:
    """The teacher RecBot on every training goal."""
    items = ctx.goals("task")
    engine = ctx.engine("teacher")
    episodes = _run(ctx, RecBot(engine, name="teacher"), items, "teacher episodes")
    rows = _rows(ctx, items, episodes, "teacher", "episodes", engine.fingerprint)
    return StageOutput(episode_metrics(rows), add=rows)


def examples_of(
    rows: list[Trajectory], keep: str = "verified", k: int = 10
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The parser and planner conversations the student learns from, as SFT rows.

    ``verified`` (the default) keeps, from every teacher episode, each parse that matches the
    simulator's ground truth exactly (constraint F1 = 1) and each plan that applies its
    preferences exactly (:func:`plan_follows`); ``successful`` keeps every valid parse and every
    finished plan of the episodes that reached their target (RecBot's own filter).

    A conversation ends at its last reply: the tool results after it (the new feed) carry no
    loss and cannot change what comes before them, so they would only cost training time.
    """

    def example(messages: list[dict[str, Any]]) -> dict[str, Any]:
        last = max(n for n, m in enumerate(messages) if m["role"] == "assistant")
        return {"messages": messages[: last + 1], "context_messages": 2}

    parser, planner = [], []
    for row in rows:
        success = row.verdict == "correct"
        for turn in row.meta["turns"]:
            parse = turn["parse"]
            if keep == "successful":
                take_parse = success and bool(parse.get("valid"))
                take_plan = success and turn["planner_complete"]
            else:
                take_parse = bool(parse.get("valid")) and parse.get("f1", 0.0) >= 1.0
                take_plan = turn["planner_complete"] and plan_follows(
                    parse.get("preferences") or {}, turn["planner_messages"][2:], k
                )
            if take_parse and turn["parser_messages"]:
                parser.append(example(turn["parser_messages"]))
            if take_plan and turn["planner_messages"]:
                planner.append(example(turn["planner_messages"]))
    return parser, planner


def _examples(ctx: RecBotContext, rows: list[Trajectory]) -> tuple[list, list]:
    return examples_of(rows, ctx.config.keep, ctx.config.episode.k)


def filter_episodes(state: RecBotState, ctx: RecBotContext, rnd: int) -> StageOutput:
    """Pick the teacher turns the student learns from (``keep``: verified or successful)."""
    rows = ctx.store.trajectories(ctx.run_id, role="teacher", stage="episodes")
    parser, planner = [], []
    for row in rows:
        row_parser, row_planner = _examples(ctx, [row])
        row.meta = {**row.meta, "kept": bool(row_parser or row_planner)}
        parser += row_parser
        planner += row_planner
    kept = [r for r in rows if r.meta["kept"]]
    turns = sum(len(r.meta["turns"]) for r in rows)
    metrics = {
        "keep": ctx.config.keep,
        "episodes": len(rows),
        "successful": sum(r.verdict == "correct" for r in rows),
        "kept": len(kept),
        "keep_rate": len(kept) / len(rows) if rows else 0.0,
        "turns": turns,
        "parser_examples": len(parser),
        "planner_examples": len(planner),
        **{
            f"kept_{s}": sum(r.meta["scenario"] == s for r in kept)
            for s in sorted({r.meta["scenario"] for r in rows})
        },
    }
    return StageOutput(metrics, update=rows)


def train_student(state: RecBotState, ctx: RecBotContext, rnd: int) -> StageOutput:
    """LoRA SFT of the student on the kept parser and planner turns (assistant turns only)."""
    kept = [
        r
        for r in ctx.store.trajectories(ctx.run_id, role="teacher", stage="episodes")
        if r.meta.get("kept")
    ]
    parser, planner = _examples(ctx, kept)
    if not parser and not planner:
        return StageOutput({"skipped": "the filter kept no episode"}, {"student_adapter": None})
    records = sft_records_from_rows([*parser, *planner])
    cfg = ctx.config
    out = train_role(
        ctx,
        "student",
        0,
        records,
        base=cfg.student,
        method="sft",
        settings=cfg.training,
        lora=cfg.lora,
        previous=None,
        system_prompt=PROMPTS["planner_system"].format(k=cfg.episode.k),
    )
    for checkpoint in out.add:
        checkpoint.metrics = {
            **checkpoint.metrics,
            "agent_mode": "recbot",
            "tools": [t.schema for t in PLANNER_TOOLS],
            "parser_examples": len(parser),
            "planner_examples": len(planner),
        }
    out.metrics |= {"parser_examples": len(parser), "planner_examples": len(planner)}
    return out


def _eval(ctx: RecBotContext, stage: str, system: System, role: str, model: str) -> StageOutput:
    items = ctx.goals("heldout")
    episodes = _run(ctx, system, items, EVALS[stage][1])
    rows = _rows(ctx, items, episodes, role, stage, model)
    return StageOutput({"label": EVALS[stage][1], **episode_metrics(rows)}, add=rows)


def _baseline(kind: str) -> Callable[[RecBotState, RecBotContext, int], StageOutput]:
    def work(state: RecBotState, ctx: RecBotContext, rnd: int) -> StageOutput:
        if not ctx.config.baselines:
            return StageOutput({"skipped": "baselines are off"})
        return _eval(ctx, f"eval_{kind}", Baseline(kind), kind, kind)  # type: ignore[arg-type]

    work.__doc__ = f"The {kind} baseline on the held-out goals."
    return work


def eval_teacher(state: RecBotState, ctx: RecBotContext, rnd: int) -> StageOutput:
    """The teacher RecBot on the held-out goals."""
    if not ctx.config.eval_teacher:
        return StageOutput({"skipped": "eval_teacher is off"})
    engine = ctx.engine("teacher")
    return _eval(ctx, "eval_teacher", RecBot(engine, "teacher"), "teacher", engine.fingerprint)


def eval_student_base(state: RecBotState, ctx: RecBotContext, rnd: int) -> StageOutput:
    """The student before training, as a RecBot."""
    engine = ctx.with_adapter("student", None)
    student = RecBot(engine, "student", STUDENT_PARSER_PREFIX)
    return _eval(ctx, "eval_student_base", student, "student_base", engine.fingerprint)


def eval_student(state: RecBotState, ctx: RecBotContext, rnd: int) -> StageOutput:
    """The distilled student, as a RecBot."""
    adapter = state.get("student_adapter")
    if adapter is None:
        return StageOutput({"skipped": "no student was trained"})
    engine = ctx.with_adapter("student", adapter)
    student = RecBot(engine, "student", STUDENT_PARSER_PREFIX)
    return _eval(ctx, "eval_student", student, "student", engine.fingerprint)


STAGES: list[tuple[str, Callable[..., StageOutput]]] = [
    ("setup", setup),
    ("teacher_episodes", teacher_episodes),
    ("filter", filter_episodes),
    ("train_student", train_student),
    ("eval_popularity", _baseline("popularity")),
    ("eval_collaborative", _baseline("collaborative")),
    ("eval_retrieval", _baseline("retrieval")),
    ("eval_teacher", eval_teacher),
    ("eval_student_base", eval_student_base),
    ("eval_student", eval_student),
]


def build_graph() -> StateGraph:
    """The RecBot graph (uncompiled): the stages in a line."""
    graph = StateGraph(RecBotState, context_schema=RecBotContext)
    add_stage_chain(graph, START, STAGES, END)
    return graph


class RecBotRun(SchemeRun):
    """A RecBot run: create, run (resumably), inspect.

    Example:
        >>> run = RecBotRun.create(RecBotJob(), Workspace.resolve("ws"))
        >>> run.run()
        >>> run.scores()   # pass rate per system: {"popularity": ..., "teacher": ..., ...}
    """

    scheme = "recbot"
    job = RecBotJob
    trained_roles = ("student",)
    report_section = SECTION

    def _build(
        self,
        *,
        progress: bool = True,
        loader: Callable[[str], Engine] | None = None,
        catalog: Callable[[set[str]], Catalog] | None = None,
    ) -> tuple[RecBotContext, StateGraph, int]:
        context = RecBotContext(
            self.config,
            self.store,
            self.workspace,
            self.run_id,
            progress=progress,
            loader=loader,
            catalog_factory=catalog,
        )
        return context, build_graph(), len(STAGES)

    @classmethod
    def check(cls, config: RecBotJob) -> None:
        """A missing catalog package or a bad catalog file fails here, before a run exists."""
        from tools.catalog.films import CatalogUnavailable, movielens_dir
        from tools.retrieval import builtin_embedding_dir

        builtin_embedding_dir()
        cfg = config.catalog
        try:
            if cfg.items is not None and cfg.interactions is not None:
                load_catalog_files(cfg.items, cfg.interactions)
            else:
                movielens_dir()
        except CatalogUnavailable as exc:
            raise ConfigError(str(exc)) from None

    def run(self, until: str | None = None) -> Run:
        """Run to the end, or pause after stage ``until``; resumes where it stopped."""
        return self._run_until(until, [n for n, _ in STAGES])

    def scores(self) -> dict[str, float]:
        """Held-out pass rate per evaluated system."""
        found = {}
        for stage in self.store.stages(self.run_id):
            value = (stage.metrics or {}).get("pass")
            if stage.name in EVALS and stage.status == "finished" and value is not None:
                found[EVALS[stage.name][0]] = value
        return found
