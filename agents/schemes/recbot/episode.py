"""RecBot episodes: a simulated user steers a feed, turn by turn; a LangGraph graph.

One graph runs a batch of episodes in lockstep (one batched model call per node):

* ``speak``: the simulator voices this turn's cues of each running episode as a command, seeing
  the feed it was last shown (an LLM; a reply that is not a user's command, that leaves out a
  cue's value or that adds a genre or number of its own is asked again twice, then the cues are
  said plainly, and that is counted);
* ``recommend``: the system under test rebuilds the feed. A RecBot system runs its **Parser**
  (command, feed and preferences so far → preferences JSON, validated, re-asked once when
  malformed, then reconciled with the memory rule) and its **Planner** (preferences → a chain of
  the catalog tools, run on the episode's :class:`tools.catalog.Feed`, ending with
  ``aggregate_feed``). The baselines (popularity, collaborative, retrieval on the commands) rank
  without an agent, on the same goals and the same simulator;
* ``judge``: the feed is scored against the goal (Recall, NDCG, CSR at K); the episode ends
  satisfied when the target is in the top K, or exhausted after its last turn.

Every parse is scored against the goal's ground truth (JSON valid, constraint F1); the parser's
and planner's conversations are kept for training the student.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypedDict

import yaml
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from tqdm.auto import tqdm

from agents.models.base import ChatRequest, Engine, Message
from agents.schemes.recbot.metrics import (
    FeedScore,
    collaborative_feed,
    popularity_feed,
    retrieval_feed,
)
from agents.schemes.recbot.preferences import (
    ParseFailure,
    Preferences,
    constraint_f1,
    parse_preferences,
    reconcile,
)
from agents.schemes.recbot.preferences import key as constraint_key
from agents.schemes.recbot.users import Goal, says_more
from tools import ToolContext, call_tool
from tools.catalog import PLANNER_TOOLS, Catalog, Feed, HardConstraint

log = logging.getLogger(__name__)

PROMPTS: dict[str, str] = yaml.safe_load(
    Path(__file__).with_name("prompts.yaml").read_text(encoding="utf-8")
)
Status = Literal["running", "satisfied", "exhausted"]
_NOT_A_USER = (
    "here are",
    "here is",
    "sure",
    "i recommend",
    "as an ai",
    "<tool_call>",
    "1.",
    "i'm sorry",
    "i am sorry",
    "sorry",
    "i can't",
    "i cannot",
    "films on your screen",
    "wishes",
    "title:",
    "example",
)


@dataclass
class RecSettings:
    """How episodes run.

    Attributes:
        k: Films in a feed (and the K of Recall@K, NDCG@K, CSR@K).
        shown: Films of the feed the simulator and the parser read.
        parser_max_tokens: Tokens of a parser reply.
        planner_max_tokens: Tokens of a planner reply.
        planner_steps: Planner replies per turn before the feed is ranked without it.
        parse_retries: Times a malformed parse is asked again.
        simulator_max_tokens: Tokens of a user command.
        temperature: Sampling temperature of parser and planner (0 = greedy).
        seed: Sampling seed.
    """

    k: int = 10
    shown: int = 5
    parser_max_tokens: int = 256
    planner_max_tokens: int = 384
    planner_steps: int = 2
    parse_retries: int = 1
    simulator_max_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0


@dataclass
class Turn:
    """One command and what the system made of it."""

    command: str
    voiced: str = "model"  # "model", or "cues" when the simulator's reply was unusable
    feed: list[str] = field(default_factory=list)
    score: dict[str, float] = field(default_factory=dict)
    parse: dict[str, Any] = field(default_factory=dict)
    parser_messages: list[Message] = field(default_factory=list)
    planner_messages: list[Message] = field(default_factory=list)
    planner_complete: bool = True


@dataclass
class RecEpisode:
    """One simulated user's episode."""

    goal: Goal
    turns: list[Turn] = field(default_factory=list)
    preferences: Preferences = field(default_factory=Preferences)
    status: Status = "running"
    start_feed: list[str] = field(default_factory=list)

    @property
    def turn(self) -> int:
        """The index of the current (last) turn."""
        return len(self.turns) - 1

    def summary(self) -> dict[str, Any]:
        """Scores of the last turn and the episode's counts, as stored."""
        last = self.turns[-1].score if self.turns else {}
        parses = [t.parse for t in self.turns if t.parse]
        return {
            "status": self.status,
            "rounds": len(self.turns),
            "passed": self.status == "satisfied",
            "recall": last.get("recall", 0.0),
            "ndcg": last.get("ndcg", 0.0),
            "csr": last.get("csr", 0.0),
            "parses": len(parses),
            "valid_parses": sum(bool(p.get("valid")) for p in parses),
            "f1": [p["f1"] for p in parses if "f1" in p],
            "planner_incomplete": sum(not t.planner_complete for t in self.turns),
            "voiced_by_cues": sum(t.voiced == "cues" for t in self.turns),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "goal": self.goal.to_dict(),
            "turns": [asdict(t) for t in self.turns],
            "preferences": self.preferences.model_dump(),
            "status": self.status,
            "start_feed": self.start_feed,
            "summary": self.summary(),
        }


class System(Protocol):
    """What ``recommend`` runs: one feed per running episode for its latest command."""

    name: str

    def recommend(self, episodes: list[RecEpisode], ctx: EpisodeContext) -> None: ...


PARSER_PREFIX = '{"positive": {"hard": ['
"""The start of every parser reply of a model this scheme has not trained: the model continues
the preferences JSON from here."""
STUDENT_PARSER_PREFIX = '{"positive":{"hard":['
"""The parser's reply prefix for the student, before and after training: compact like the stored
replies it is trained on, so that its tokens are exactly their first tokens (SmolLM2 tokenises
the spaced ``": [{"`` differently from the compact one). Qwen2.5, by contrast, merges ``":[{"``
into one token, so a teacher cut off after a compact ``[`` parsed worse (measured: eval F1 0.38
against 0.67 with the spaced prefix): each model gets the prefix that suits it."""
PLANNER_PREFIX = '{"name": "'
"""The start of every planner reply: the model continues its first tool call from here."""

_CALL_START = re.compile(r'<tool_call>|\{\s*"name"\s*:')


def parse_calls(text: str) -> list[dict[str, Any]]:
    """Every tool call in a planner reply, in order, as OpenAI tool calls.

    A call is a JSON object ``{"name": ..., "arguments": {...}}``, inside ``<tool_call>`` tags
    (the closing tag may be missing) or bare; objects that are not calls are skipped.
    """
    decoder = json.JSONDecoder(strict=False)
    calls: list[dict[str, Any]] = []
    at = 0
    while match := _CALL_START.search(text, at):
        start = match.end() if match.group(0) == "<tool_call>" else match.start()
        body = text[start:]
        stripped = body.lstrip()
        try:
            obj, used = decoder.raw_decode(stripped)
        except json.JSONDecodeError:
            at = match.end()
            continue
        at = start + (len(body) - len(stripped)) + used
        arguments = obj.get("arguments", {}) if isinstance(obj, dict) else None
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                arguments = None
        if (
            isinstance(obj, dict)
            and isinstance(obj.get("name"), str)
            and isinstance(arguments, dict)
        ):
            calls.append(
                {
                    "id": f"call_{len(calls)}",
                    "type": "function",
                    "function": {"name": obj["name"], "arguments": json.dumps(arguments)},
                }
            )
    return calls


def plan_of(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls a planner reply makes: repeats of an earlier call dropped, nothing after the
    first ``aggregate_feed`` (small models tend to run on, repeating their last call)."""
    kept: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for call in calls:
        name, arguments = call["function"]["name"], call["function"]["arguments"]
        if (name, arguments) in seen:
            continue
        seen.add((name, arguments))
        kept.append(call)
        if name == "aggregate_feed":
            break
    return kept


def plan_follows(preferences: dict[str, Any], messages: Sequence[Message], k: int) -> bool:
    """Whether a planner turn did exactly what its preferences say: one filter with every hard
    constraint (negatives negated), a match per positive soft phrase, an attenuation per
    negative one, ``aggregate_feed`` with ``k`` last, and no tool error on the way."""
    prefs = Preferences.model_validate(preferences)
    calls = [c for m in messages if m.get("role") == "assistant" for c in m.get("tool_calls") or []]
    if any(
        str(m.get("content", "")).startswith("Error") for m in messages if m.get("role") == "tool"
    ):
        return False
    made: dict[str, list[dict[str, Any]]] = {}
    for call in calls:
        made.setdefault(call["function"]["name"], []).append(
            json.loads(call["function"]["arguments"])
        )
    wanted = {constraint_key(c) for c in prefs.filters()}
    try:
        filtered = [
            {constraint_key(HardConstraint.model_validate(c)) for c in args.get("constraints", [])}
            for args in made.get("filter_items", [])
        ]
    except (ValueError, TypeError, AttributeError):
        return False
    if (filtered or wanted) and filtered != [wanted]:
        return False
    for name, phrases in (
        ("match_items", prefs.positive.soft),
        ("attenuate_items", prefs.negative.soft),
    ):
        said = sorted(str(a.get("preference", "")).strip().lower() for a in made.get(name, []))
        if said != sorted(p.strip().lower() for p in phrases):
            return False
    last = calls[-1]["function"] if calls else {}
    return last.get("name") == "aggregate_feed" and made["aggregate_feed"] == [{"k": k}]


def _lines(catalog: Catalog, ids: Sequence[str], count: int) -> str:
    if not ids:
        return "(nothing yet)"
    return "\n".join(f"{n}. {catalog.by_id[i].line()}" for n, i in enumerate(ids[:count], 1))


def _feed_before(episode: RecEpisode) -> list[str]:
    return episode.turns[-2].feed if len(episode.turns) > 1 else episode.start_feed


@dataclass
class Baseline:
    """A recommender without an agent: ``popularity``, ``collaborative`` or ``retrieval``."""

    kind: Literal["popularity", "collaborative", "retrieval"]

    @property
    def name(self) -> str:
        return self.kind

    def recommend(self, episodes: list[RecEpisode], ctx: EpisodeContext) -> None:
        for episode in episodes:
            history, k = episode.goal.history, ctx.settings.k
            if self.kind == "popularity":
                feed = popularity_feed(ctx.catalog, history, k)
            elif self.kind == "collaborative":
                feed = collaborative_feed(ctx.catalog, history, k)
            else:
                feed = retrieval_feed(ctx.catalog, history, [t.command for t in episode.turns], k)
            episode.turns[-1].feed = feed


@dataclass
class RecBot:
    """The agent: a Parser and a Planner, both played by ``engine``."""

    engine: Engine
    name: str = "recbot"
    parser_prefix: str = PARSER_PREFIX

    def recommend(self, episodes: list[RecEpisode], ctx: EpisodeContext) -> None:
        self._parse(episodes, ctx)
        self._plan(episodes, ctx)

    # -- parser --------------------------------------------------------------------------------

    def _parse(self, episodes: list[RecEpisode], ctx: EpisodeContext) -> None:
        cfg = ctx.settings
        system = PROMPTS["parser_system"].format(genres=", ".join(ctx.genres))
        pending: dict[int, list[Message]] = {}
        for i, episode in enumerate(episodes):
            turn = episode.turns[-1]
            user = PROMPTS["parser_user"].format(
                feed=_lines(ctx.catalog, _feed_before(episode), cfg.shown),
                preferences=episode.preferences.model_dump_json(),
                command=turn.command,
            )
            pending[i] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        errors: dict[int, str] = {}
        for attempt in range(cfg.parse_retries + 1):
            if not pending:
                break
            order = list(pending)
            requests = [
                ChatRequest(
                    messages=pending[i],
                    temperature=cfg.temperature,
                    max_tokens=cfg.parser_max_tokens,
                    seed=cfg.seed + attempt,
                    prefix=self.parser_prefix,
                )
                for i in order
            ]
            for i, result in zip(order, self.engine.generate(requests), strict=True):
                episode, reply = episodes[i], (self.parser_prefix + result.text).strip()
                try:
                    parsed = parse_preferences(reply)
                except ParseFailure as exc:
                    errors[i] = str(exc)
                    retry = PROMPTS["parser_retry"].format(error=exc)
                    pending[i] = [
                        *pending[i],
                        {"role": "assistant", "content": reply},
                        {"role": "user", "content": retry.strip()},
                    ]
                    continue
                merged = reconcile(episode.preferences, parsed)
                turn = episode.turns[-1]
                turn.parser_messages = [
                    pending[i][0],
                    pending[i][1],
                    # compact JSON, like STUDENT_PARSER_PREFIX: spaced, it would teach SmolLM2
                    # ' [{' as one token, and a student that never saw a lone ' [' continued
                    # wrote '<107, 1997, ...' after a spaced prefix (measured: JSON valid 0.02)
                    {"role": "assistant", "content": merged.model_dump_json()},
                ]
                turn.parse = {"valid": True, "retries": attempt, "raw": reply}
                episode.preferences = merged
                errors.pop(i, None)
                del pending[i]
        for i in pending:  # still malformed: the preferences stay as they were
            episodes[i].turns[-1].parse = {
                "valid": False,
                "retries": cfg.parse_retries,
                "error": errors.get(i, "no reply"),
                "raw": pending[i][-2]["content"] if len(pending[i]) > 2 else "",
            }
        for episode in episodes:
            parse = episode.turns[-1].parse
            if episode.goal.turns:  # a simulated user: the parse has a ground truth
                truth, _ = episode.goal.truth(episode.turn)
                parse["f1"] = constraint_f1(episode.preferences.filters(), truth)
            parse["preferences"] = episode.preferences.model_dump()

    # -- planner -------------------------------------------------------------------------------

    def _plan(self, episodes: list[RecEpisode], ctx: EpisodeContext) -> None:
        cfg = ctx.settings
        system = PROMPTS["planner_system"].format(k=cfg.k)
        feeds: dict[int, Feed] = {}
        running: dict[int, list[Message]] = {}
        for i, episode in enumerate(episodes):
            feeds[i] = Feed(ctx.catalog, history=list(episode.goal.history))
            prefs = episode.preferences
            user = PROMPTS["planner_user"].format(
                filters=json.dumps([c.model_dump() for c in prefs.filters()]),
                match=json.dumps(prefs.positive.soft),
                avoid=json.dumps(prefs.negative.soft),
            )
            running[i] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        done: set[int] = set()
        for step in range(cfg.planner_steps):
            order = [i for i in running if i not in done]
            if not order:
                break
            requests = [
                ChatRequest(
                    messages=running[i],
                    temperature=cfg.temperature,
                    max_tokens=cfg.planner_max_tokens,
                    seed=cfg.seed + step,
                    prefix=PLANNER_PREFIX,
                )
                for i in order
            ]
            for i, result in zip(order, self.engine.generate(requests), strict=True):
                text = PLANNER_PREFIX + result.text
                calls = plan_of(parse_calls(text))
                if not calls:
                    running[i] += [
                        {"role": "assistant", "content": text.strip()},
                        {
                            "role": "user",
                            "content": "Error: no tool call found. Reply with the calls only, "
                            'one {"name": ..., "arguments": {...}} object per line.',
                        },
                    ]
                    continue
                for n, call in enumerate(calls):
                    call["id"] = f"call_{step}_{n}"
                # the reply is calls only (it starts inside the first one): no thought to keep
                running[i].append({"role": "assistant", "content": "", "tool_calls": calls})
                with ToolContext([feeds[i]]) as context:
                    for call in calls:
                        observation = call_tool(call, PLANNER_TOOLS, context)
                        running[i].append(observation)
                        ran = call["function"]["name"] == "aggregate_feed"
                        if ran and not str(observation["content"]).startswith("Error"):
                            done.add(i)
        for i, episode in enumerate(episodes):
            turn = episode.turns[-1]
            turn.planner_messages = running[i]
            turn.planner_complete = i in done
            feed = feeds[i]
            turn.feed = feed.shown if i in done else feed.rank(cfg.k)


@dataclass
class EpisodeContext:
    """What the episode graph's nodes use."""

    catalog: Catalog
    system: System
    simulator: Engine
    settings: RecSettings
    genres: list[str]
    progress: Any = None


class EpisodeState(TypedDict):
    episodes: list[RecEpisode]


# -- nodes ---------------------------------------------------------------------------------------


def _usable(text: str) -> bool:
    lowered = text.lower().lstrip("\"' ")
    return bool(lowered) and not lowered.startswith(_NOT_A_USER) and len(text) < 400


def _clean(text: str) -> str:
    text = text.strip().split("\n\n")[0].strip()
    for prefix in ("Request:", "User:", "Me:", "Command:"):
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
    return text.strip("\"' ")


def speak(state: EpisodeState, runtime: Runtime[EpisodeContext]) -> dict[str, Any]:
    """The simulator voices the next turn's cues of every running episode."""
    ctx = runtime.context
    cfg = ctx.settings
    running = [e for e in state["episodes"] if e.status == "running"]
    prompts = []
    for episode in running:
        goal = episode.goal
        cues = goal.turns[len(episode.turns)]
        liked = [ctx.catalog.by_id[i].title for i in goal.history[-3:]]
        shown = episode.turns[-1].feed if episode.turns else episode.start_feed
        prompts.append(
            [
                {
                    "role": "system",
                    "content": PROMPTS["simulator_system"].format(liked="; ".join(liked)),
                },
                {
                    "role": "user",
                    "content": PROMPTS["simulator_user"].format(
                        feed="; ".join(ctx.catalog.by_id[i].title for i in shown[: cfg.shown])
                        or "nothing yet",
                        cues="; ".join(c.describe() for c in cues),
                    ),
                },
            ]
        )
    texts = ["" for _ in running]

    def fits(n: int) -> bool:
        cues = running[n].goal.turns[len(running[n].turns)]
        return (
            _usable(texts[n])
            and all(c.said_in(texts[n]) for c in cues)
            and not says_more(texts[n], cues, ctx.genres)
        )

    for attempt, temperature in enumerate((0.0, 0.7, 0.7)):
        ask = [n for n in range(len(texts)) if not fits(n)]
        if not ask:
            break
        requests = [
            ChatRequest(
                messages=prompts[n],
                temperature=temperature,
                max_tokens=cfg.simulator_max_tokens,
                seed=cfg.seed + attempt,
            )
            for n in ask
        ]
        for n, result in zip(ask, ctx.simulator.generate(requests), strict=True):
            texts[n] = _clean(result.text)
    for n, (episode, text) in enumerate(zip(running, texts, strict=True)):
        if fits(n):
            episode.turns.append(Turn(command=text))
        else:
            cues = episode.goal.turns[len(episode.turns)]
            plain = "; ".join(c.describe().removeprefix("you ") for c in cues)
            episode.turns.append(Turn(command=f"I {plain}.", voiced="cues"))
    return {"episodes": state["episodes"]}


def recommend(state: EpisodeState, runtime: Runtime[EpisodeContext]) -> dict[str, Any]:
    """The system under test rebuilds the feed of every running episode."""
    running = [e for e in state["episodes"] if e.status == "running"]
    runtime.context.system.recommend(running, runtime.context)
    return {"episodes": state["episodes"]}


def judge(state: EpisodeState, runtime: Runtime[EpisodeContext]) -> dict[str, Any]:
    """Score each new feed; end the episodes whose target is shown or whose cues ran out."""
    ctx = runtime.context
    for episode in state["episodes"]:
        if episode.status != "running":
            continue
        turn = episode.turns[-1]
        truth, _ = episode.goal.truth(episode.turn)
        score = FeedScore.of(turn.feed, episode.goal.target, truth, ctx.catalog, ctx.settings.k)
        turn.score = asdict(score)
        if score.recall:
            episode.status = "satisfied"
        elif len(episode.turns) >= len(episode.goal.turns):
            episode.status = "exhausted"
        if episode.status != "running" and ctx.progress:
            ctx.progress(1)
    return {"episodes": state["episodes"]}


def route(state: EpisodeState) -> Literal["speak", "__end__"]:
    return "speak" if any(e.status == "running" for e in state["episodes"]) else END


def build_episode_graph() -> StateGraph:
    """speak → recommend → judge → (speak again while any episode runs)."""
    graph = StateGraph(EpisodeState, context_schema=EpisodeContext)
    graph.add_node("speak", speak)
    graph.add_node("recommend", recommend)
    graph.add_node("judge", judge)
    graph.add_edge(START, "speak")
    graph.add_edge("speak", "recommend")
    graph.add_edge("recommend", "judge")
    graph.add_conditional_edges("judge", route)
    return graph


_COMPILED: Any = None


def run_episodes(
    goals: Sequence[Goal],
    system: System,
    *,
    catalog: Catalog,
    simulator: Engine,
    settings: RecSettings | None = None,
    progress: bool = False,
) -> list[RecEpisode]:
    """Run ``system`` on every goal, all episodes in lockstep; returns them in goal order.

    Every episode starts from the user's collaborative feed (what the app shows before any
    command), the same for every system.
    """
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = build_episode_graph().compile()
    settings = settings or RecSettings()
    episodes = [
        RecEpisode(goal, start_feed=collaborative_feed(catalog, goal.history, settings.k))
        for goal in goals
    ]
    if not episodes:
        return []
    bar = tqdm(total=len(episodes), desc=f"{system.name} episodes", unit="ep", disable=not progress)
    context = EpisodeContext(
        catalog, system, simulator, settings, catalog.genres, progress=bar.update
    )
    turns = max(len(g.turns) for g in goals)
    try:
        final = _COMPILED.invoke(
            {"episodes": episodes},
            context=context,
            config={"recursion_limit": 3 * turns + 6},
        )
    finally:
        bar.close()
    return list(final["episodes"])


def transcript(episode: RecEpisode, catalog: Catalog) -> str:
    """The episode as text: each command, the parsed preferences and the feed's top 3."""
    lines = [f"target: {catalog.by_id[episode.goal.target].line()} ({episode.status})"]
    for n, turn in enumerate(episode.turns, 1):
        prefs = turn.parse.get("preferences")
        lines.append(f"{n}. user: {turn.command}")
        if prefs is not None:
            lines.append(f"   parsed: {Preferences.model_validate(prefs).summary()}")
        top = "; ".join(catalog.by_id[i].title for i in turn.feed[:3])
        lines.append(f"   feed: {top} | recall {turn.score.get('recall', 0):g}")
    return "\n".join(lines)


def dumps(episodes: Sequence[RecEpisode]) -> str:
    return json.dumps([e.to_dict() for e in episodes])
