"""The tool-using agent loop: Thought, one tool call, observation, repeat; a LangGraph graph.

One graph runs a *batch* of episodes in lockstep, so every step is one batched engine call:

* ``think``: each running episode asks its model for the next reply (``n`` candidates when
  self-consistent action generation is on). The first step of an episode may be forced to start
  with a prefix (the first-thought prefix of agent distillation).
* ``act``: each reply is parsed into a thought and ONE tool call (``<tool_call>{...}</tool_call>``,
  or a fenced Python block, read as a ``python_exec`` call). The call is run (``python_exec`` in
  the episode's sandbox session, ``retrieve`` over the corpus) and its result becomes the next
  observation. ``final_answer`` ends the episode; so does the step limit.

A reply with no readable tool call is a *parse error*: the episode sees an error observation and
goes on, and the error is counted (trajectories with one are not used for training). A tool that
fails (a Python exception, a bad argument) is an *execution error*: its message is the
observation, which is how an agent learns to recover.

Self-consistent action generation (``candidates > 1``): every candidate is parsed and run in a
scratch sandbox that first replays the episode's earlier code; the first candidate whose output
is the most common among the valid ones is kept, the first valid one if all outputs differ, and
the first candidate (with its error) if none is valid. :func:`choose_action` holds that rule.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypedDict

import yaml
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from tqdm.auto import tqdm

from agents.models.base import ChatRequest, Engine, Message
from agents.models.chat_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from tools import DEFAULT_TOOLS, FINAL_ANSWER, Tool, ToolContext, call_tool, tool_message
from tools.retrieval import Corpus

log = logging.getLogger(__name__)

_PROMPTS: dict[str, Any] = yaml.safe_load(
    Path(__file__).with_name("agent_prompts.yaml").read_text(encoding="utf-8")
)
#: The agent's system prompt, from ``agent_prompts.yaml`` beside this module.
AGENT_SYSTEM_PROMPT: str = _PROMPTS["system"]


def _demo_message(message: dict[str, Any]) -> Message:
    """A worked-example turn with its tool calls in OpenAI format (arguments as JSON text)."""
    calls = message.get("tool_calls")
    if not calls:
        return dict(message)
    return {
        **message,
        "tool_calls": [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
            }
            for call in calls
        ],
    }


#: Worked examples shown before every task (as earlier turns of the conversation): one math
#: problem solved with Python, one question answered by retrieval.
DEMONSTRATIONS: list[Message] = [_demo_message(m) for m in _PROMPTS["demonstrations"]]


#: Strings that end a reply: after its tool call a model must wait for the observation.
STOP = (TOOL_CALL_CLOSE, "<tool_response>", "\nObservation:")

_BARE_CALL_RE = re.compile(r'\{\s*"name"\s*:')
_FENCE_RE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S)

EpisodeStatus = Literal["running", "answered", "step_limit"]


# ---------------------------------------------------------------------------- settings


@dataclass
class LoopSettings:
    """How an agent runs.

    Attributes:
        max_steps: Replies per episode; an episode without a final answer by then is stopped.
        temperature: Sampling temperature of the reply (0 = greedy).
        max_tokens: Tokens per reply.
        candidates: Candidate actions per step; above 1, self-consistent action generation.
        candidate_temperature: Sampling temperature of the candidates.
        observation_chars: Observations are cut to this many characters (head and tail kept).
        sandbox_timeout: Wall-clock seconds per ``python_exec`` call.
        seed: Sampling seed (step ``s`` of an episode uses ``seed + s``).
        complete_calls: When a reply ends (not cut by ``max_tokens``) with a thought but no tool
            call, ask once more for its continuation after an opening ``<tool_call>`` tag; small
            models often stop right before the call. Counted per episode as ``forced_calls``.
    """

    max_steps: int = 5
    temperature: float = 0.0
    max_tokens: int = 384
    candidates: int = 1
    candidate_temperature: float = 0.4
    observation_chars: int = 1500
    sandbox_timeout: float = 10.0
    seed: int = 0
    complete_calls: bool = True


# ---------------------------------------------------------------------------- parsing


@dataclass
class Action:
    """One parsed reply: the thought, the tool call (OpenAI format) or why there is none."""

    text: str
    thought: str
    call: dict[str, Any] | None = None
    error: str | None = None

    @property
    def is_final(self) -> bool:
        return self.call is not None and self.call["function"]["name"] == FINAL_ANSWER


def _call(name: str, arguments: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
    }


def parse_action(text: str, call_id: str = "call_0") -> Action:
    """Read one reply: the thought before the first tool call, and that call.

    A ``<tool_call>`` block is read up to the end of its JSON object (a missing closing tag is
    fine: it is a stop string); raw newlines inside JSON strings are accepted, since models
    write code that way. Without the tags, a bare ``{"name": ...}`` object is the call; without
    either, a fenced Python block is a ``python_exec`` call. Anything after the first call is
    ignored (one action per step).
    """
    start, body_at = text.find(TOOL_CALL_OPEN), -1
    if start >= 0:
        body_at = start + len(TOOL_CALL_OPEN)
    elif bare := _BARE_CALL_RE.search(text):  # small models often drop the tags
        start = body_at = bare.start()
    if start >= 0:
        thought = text[:start].strip()
        body = text[body_at:].lstrip()
        try:
            obj, _ = json.JSONDecoder(strict=False).raw_decode(body)
        except json.JSONDecodeError as err:
            return Action(text, thought, error=f"the tool call is not valid JSON ({err.msg})")
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            return Action(text, thought, error='the tool call needs a "name" string')
        arguments = obj.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments, strict=False)
            except json.JSONDecodeError:
                return Action(text, thought, error='"arguments" is not a JSON object')
        if not isinstance(arguments, dict):
            return Action(text, thought, error='"arguments" is not a JSON object')
        return Action(text, thought, call=_call(obj["name"], arguments, call_id))
    fence = _FENCE_RE.search(text)
    if fence and fence.group(1).strip():
        code = fence.group(1).strip()
        return Action(
            text, text[: fence.start()].strip(), call=_call("python_exec", {"code": code}, call_id)
        )
    return Action(text, text.strip(), error="no tool call found")


def parse_error_message(error: str) -> str:
    """The observation an agent gets for a reply with no usable tool call."""
    return (
        f"Error: {error}. Write a Thought, then call exactly one tool as "
        f'{TOOL_CALL_OPEN}{{"name": "...", "arguments": {{...}}}}{TOOL_CALL_CLOSE}.'
    )


def first_paragraph(text: str, max_chars: int = 500) -> str:
    """The first non-empty paragraph of a chain-of-thought answer (the first-thought prefix)."""
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        paragraph = paragraph.strip()
        if paragraph:
            return paragraph[:max_chars].rstrip()
    return ""


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, keeping its head and tail."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return f"{text[:head]}\n...[{len(text) - limit} characters cut]...\n{text[-(limit - head) :]}"


def choose_action(outcomes: Sequence[tuple[bool, str]]) -> int:
    """Self-consistent choice among candidates given ``(valid, output)`` per candidate.

    The first valid candidate whose output is the most common among the valid ones; when all
    valid outputs differ that is the first valid candidate; with no valid one, candidate 0.
    """
    counts = Counter(output for valid, output in outcomes if valid)
    if not counts:
        return 0
    best = max(counts.values())
    return next(i for i, (valid, out) in enumerate(outcomes) if valid and counts[out] == best)


# ---------------------------------------------------------------------------- episodes


@dataclass
class Episode:
    """One task's run through the loop.

    Attributes:
        messages: The conversation in OpenAI format (system, user, then assistant turns with
            ``tool_calls`` and ``tool`` observations).
        status: ``running``, ``answered`` (``final_answer`` called) or ``step_limit``.
        answer: The final answer, when there is one.
        steps: Replies so far.
        parse_errors: Replies with no usable tool call.
        exec_errors: Tool calls whose observation is an error.
        prefix: Forced start of the first reply (first-thought prefix), if any.
        forced_calls: Replies completed after an added ``<tool_call>`` tag (see
            ``LoopSettings.complete_calls``).
        candidates: Per step with self-consistency: how many candidates were valid, and which
            was chosen.
        tool_uses: Tool calls that ran, by tool (``python_exec``, ``retrieve``); a code agent
            counts each block it ran as ``python_exec`` and each ``retrieve`` call inside it.
    """

    messages: list[Message]
    status: EpisodeStatus = "running"
    answer: str | None = None
    steps: int = 0
    parse_errors: int = 0
    exec_errors: int = 0
    prefix: str | None = None
    forced_calls: int = 0
    candidates: list[dict[str, int]] = field(default_factory=list)
    tool_uses: dict[str, int] = field(default_factory=dict)

    def used(self, tool: str, times: int = 1) -> None:
        """Count ``times`` calls of ``tool``."""
        if times:
            self.tool_uses[tool] = self.tool_uses.get(tool, 0) + times

    @property
    def clean(self) -> bool:
        """Answered, with no parse error (execution errors are allowed)."""
        return self.status == "answered" and self.parse_errors == 0

    def summary(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "steps": self.steps,
            "parse_errors": self.parse_errors,
            "exec_errors": self.exec_errors,
            "prefix": self.prefix,
            "forced_calls": self.forced_calls,
            "candidates": self.candidates,
            "tool_uses": dict(self.tool_uses),
        }


class LoopState(TypedDict):
    episodes: list[Episode]
    replies: dict[int, list[str]]  # episode index -> candidate texts of the current step


@dataclass
class LoopContext:
    """What the graph's nodes use: the model, the tools and each episode's tool context."""

    engine: Engine
    tools: list[Tool]
    settings: LoopSettings
    corpus: Corpus | None
    contexts: dict[int, ToolContext] = field(default_factory=dict)
    code: dict[int, list[str]] = field(default_factory=dict)  # python run so far, per episode
    progress: Callable[[int], None] | None = None

    def shared(self) -> dict[type, object]:
        """The resources every episode's tools share, filed by the type tools ask for.

        The corpus is filed under ``Corpus`` explicitly so that any object with its ``search``
        (a stand-in corpus, say) serves ``retrieve`` too.
        """
        return {Corpus: self.corpus} if self.corpus is not None else {}

    def context(self, index: int) -> ToolContext:
        if index not in self.contexts:
            from sandbox import Session

            session = Session(timeout=self.settings.sandbox_timeout)
            # The episode's context owns its session: closing the context closes the sandbox.
            self.contexts[index] = ToolContext(self.shared(), owned=[session])
        return self.contexts[index]

    def close(self, index: int | None = None) -> None:
        for i in [index] if index is not None else list(self.contexts):
            context = self.contexts.pop(i, None)
            if context is not None:
                context.close()


def _schemas(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    return [t.schema for t in tools]


def _observation(result: dict[str, Any], limit: int) -> tuple[str, bool]:
    """Observation text of a tool message and whether it reports an error."""
    content = str(result.get("content", ""))
    lines = f"\n{content}"
    failed = content.startswith("Error:") or "\nerror:\n" in lines or "\nkilled (" in lines
    return clip(content, limit), failed


def _run(ctx: LoopContext, call: dict[str, Any], context: ToolContext) -> tuple[str, bool]:
    result = call_tool(call, ctx.tools, context)
    return _observation(result, ctx.settings.observation_chars)


def _trial(ctx: LoopContext, index: int, action: Action) -> tuple[bool, str]:
    """Run a candidate without touching the episode: (valid, output) for :func:`choose_action`."""
    if action.call is None:
        return False, action.error or ""
    name = action.call["function"]["name"]
    if name == FINAL_ANSWER:
        args = json.loads(action.call["function"]["arguments"])
        return "answer" in args, str(args.get("answer", "")).strip()
    if name != "python_exec":
        output, failed = _run(ctx, action.call, ToolContext(ctx.shared()))
        return not failed, output
    from sandbox import Session

    with Session(timeout=ctx.settings.sandbox_timeout) as scratch:
        for code in ctx.code.get(index, []):
            scratch.run(code)
        output, failed = _run(ctx, action.call, ToolContext([scratch]))
    return not failed, output


# ---------------------------------------------------------------------------- nodes


def think(state: LoopState, runtime: Runtime[LoopContext]) -> dict[str, Any]:
    """Ask the model for every running episode's next reply (one batched call)."""
    ctx = runtime.context
    cfg = ctx.settings
    running = [i for i, e in enumerate(state["episodes"]) if e.status == "running"]
    requests = []
    for i in running:
        episode = state["episodes"][i]
        sc = cfg.candidates > 1
        requests.append(
            ChatRequest(
                messages=episode.messages,
                n=cfg.candidates if sc else 1,
                temperature=cfg.candidate_temperature if sc else cfg.temperature,
                max_tokens=cfg.max_tokens,
                stop=STOP,
                seed=cfg.seed + episode.steps,
                tools=_schemas(ctx.tools),
                prefix=episode.prefix if episode.steps == 0 else None,
            )
        )
    results = ctx.engine.generate(requests, progress=False) if requests else []
    replies: dict[int, list[str]] = {}
    unfinished: list[tuple[int, int, ChatRequest]] = []  # (episode, candidate, request)
    for i, request, result in zip(running, requests, results, strict=True):
        replies[i] = [(request.prefix or "") + text for text in result.texts]
        for j, completion in enumerate(result.completions):
            text = replies[i][j]
            if cfg.complete_calls and completion.finish_reason != "length" and text.strip():
                if parse_action(text).call is None:
                    opened = f"{text.rstrip()}\n{TOOL_CALL_OPEN}\n"
                    ask = replace(request, n=1, seed=(request.seed or 0) + j, prefix=opened)
                    unfinished.append((i, j, ask))
    if unfinished:
        more = ctx.engine.generate([r for _, _, r in unfinished], progress=False)
        for (i, j, ask), result in zip(unfinished, more, strict=True):
            replies[i][j] = (ask.prefix or "") + result.text
            state["episodes"][i].forced_calls += 1
    return {"replies": replies}


def act(state: LoopState, runtime: Runtime[LoopContext]) -> dict[str, Any]:
    """Parse each reply, choose among candidates, run the tool, append the observation."""
    ctx = runtime.context
    cfg = ctx.settings
    episodes = list(state["episodes"])
    for i, texts in state["replies"].items():
        episode = episodes[i]
        call_id = f"call_{episode.steps}"
        actions = [parse_action(text, call_id) for text in texts]
        chosen = 0
        if len(actions) > 1:
            tried: dict[str, tuple[bool, str]] = {}  # identical candidates run once
            outcomes = []
            for a in actions:
                key = json.dumps(a.call["function"], sort_keys=True) if a.call else a.text
                if key not in tried:
                    tried[key] = _trial(ctx, i, a)
                outcomes.append(tried[key])
            chosen = choose_action(outcomes)
            valid = sum(ok for ok, _ in outcomes)
            episode.candidates.append({"step": episode.steps, "valid": valid, "chosen": chosen})
        action = actions[chosen]
        episode.steps += 1
        if action.call is None:
            episode.parse_errors += 1
            episode.messages.append({"role": "assistant", "content": action.text.strip()})
            error = parse_error_message(action.error or "no tool call found")
            episode.messages.append({"role": "user", "content": error})
        else:
            turn: Message = {"role": "assistant", "content": action.thought}
            turn["tool_calls"] = [action.call]
            episode.messages.append(turn)
            name = action.call["function"]["name"]
            if action.is_final:
                args = json.loads(action.call["function"]["arguments"])
                if "answer" in args:
                    episode.status, episode.answer = "answered", str(args["answer"]).strip()
                    ctx.close(i)
                    if ctx.progress:
                        ctx.progress(1)
                    continue
            output, failed = _run(ctx, action.call, ctx.context(i))
            episode.used(name)
            episode.exec_errors += failed
            if name == "python_exec" and not failed:
                ctx.code.setdefault(i, []).append(
                    json.loads(action.call["function"]["arguments"])["code"]
                )
            episode.messages.append(tool_message(call_id, name, output))
        if episode.steps >= cfg.max_steps:
            episode.status = "step_limit"
            ctx.close(i)
            if ctx.progress:
                ctx.progress(1)
    return {"episodes": episodes, "replies": {}}


def route(state: LoopState) -> Literal["think", "__end__"]:
    return "think" if any(e.status == "running" for e in state["episodes"]) else END


def build_agent_graph(
    think_node: Callable[..., dict[str, Any]] = think,
    act_node: Callable[..., dict[str, Any]] = act,
    state_schema: type = LoopState,
    context_schema: type = LoopContext,
) -> StateGraph:
    """think → act → (think again while any episode runs); the code agent passes its own nodes."""
    graph = StateGraph(state_schema, context_schema=context_schema)
    graph.add_node("think", think_node)
    graph.add_node("act", act_node)
    graph.add_edge(START, "think")
    graph.add_edge("think", "act")
    graph.add_conditional_edges("act", route)
    return graph


_COMPILED = None


def _compiled() -> Any:
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = build_agent_graph().compile()
    return _COMPILED


def start_messages(
    question: str,
    system_prompt: str = AGENT_SYSTEM_PROMPT,
    demonstrations: Sequence[Message] = DEMONSTRATIONS,
) -> list[Message]:
    """The opening of an episode: system prompt, worked examples, then the task."""
    system: Message = {"role": "system", "content": system_prompt}
    return [system, *(dict(m) for m in demonstrations), {"role": "user", "content": question}]


def run_agent(
    engine: Engine,
    questions: Sequence[str],
    *,
    settings: LoopSettings | None = None,
    tools: Sequence[Tool] | None = None,
    corpus: Corpus | None = None,
    prefixes: Sequence[str | None] | None = None,
    system_prompt: str = AGENT_SYSTEM_PROMPT,
    demonstrations: Sequence[Message] = DEMONSTRATIONS,
    progress: bool = False,
    desc: str = "agent",
) -> list[Episode]:
    """Run the agent on every question, all episodes batched step by step.

    Args:
        engine: The model acting as the agent.
        questions: One task per episode.
        settings: Step limit, sampling and self-consistency; defaults when omitted.
        tools: The tools offered (default ``python_exec``, ``retrieve``, ``final_answer``).
        corpus: What ``retrieve`` searches; without one it answers with an error.
        prefixes: Per question, a forced start of its first reply (or None).
        system_prompt: The agent's system message.
        demonstrations: Worked-example turns put before every task (empty for none).
        progress: Show a progress bar over finished episodes.
        desc: The progress bar's label.

    Returns:
        The finished episodes, in the order of ``questions``.
    """
    settings = settings or LoopSettings()
    episodes = new_episodes(
        questions, prefixes, lambda q: start_messages(q, system_prompt, demonstrations)
    )
    if not episodes:
        return []
    bar = tqdm(total=len(episodes), desc=desc, unit="task", disable=not progress)
    context = LoopContext(
        engine, list(tools or DEFAULT_TOOLS), settings, corpus, progress=bar.update
    )
    return run_lockstep(_compiled(), episodes, context, settings.max_steps, bar)


def new_episodes(
    questions: Sequence[str],
    prefixes: Sequence[str | None] | None,
    opening: Callable[[str], list[Message]],
) -> list[Episode]:
    """One episode per question, opened by ``opening``, with its first-reply prefix."""
    if prefixes is not None and len(prefixes) != len(questions):
        raise ValueError(f"{len(questions)} questions but {len(prefixes)} prefixes")
    return [
        Episode(opening(q), prefix=prefixes[i] if prefixes else None)
        for i, q in enumerate(questions)
    ]


def run_lockstep(
    graph: Any, episodes: list[Episode], context: Any, max_steps: int, bar: Any
) -> list[Episode]:
    """Run a compiled think/act graph over ``episodes`` to the end; close the context's
    sandboxes and the progress bar however it ends."""
    try:
        final = graph.invoke(
            {"episodes": episodes, "replies": {}},
            context=context,
            config={"recursion_limit": 2 * max_steps + 4},
        )
    finally:
        context.close()
        bar.close()
    return list(final["episodes"])
