"""The code-action agent: every step is a Python block run in the sandbox (a LangGraph graph).

Where the tool-call loop (:mod:`agents.episodes.agent_loop`) reads one JSON tool call per reply,
here each reply is a thought and one fenced Python block, as in the agent-distillation paper's
code agents. The block runs in the episode's sandbox session, where two functions are lent by
the host over the sandbox's own pipes (the sandbox has no network):

* ``retrieve(query, k=3)`` returns the corpus' best passages as text (print it to read it);
* ``final_answer(answer)`` ends the episode with that answer.

What the block printed, its last expression's value or its error is the next observation.
Episodes run in lockstep, one batched model call per step. With ``candidates > 1`` every step
samples several blocks, runs each in a scratch session that replays the episode's earlier code,
and keeps the first block whose outcome (its final answer, else its output) is the most common
among those that ran without error: self-consistency over execution outputs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import yaml
from langgraph.graph import StateGraph
from langgraph.runtime import Runtime
from tqdm.auto import tqdm

from agents.episodes.agent_loop import (
    Episode,
    LoopSettings,
    build_agent_graph,
    choose_action,
    clip,
    new_episodes,
    run_lockstep,
)
from agents.models.base import ChatRequest, Engine, Message
from tools.retrieval import MAX_K, Corpus, format_documents

_PROMPTS: dict[str, Any] = yaml.safe_load(
    Path(__file__).with_name("code_prompts.yaml").read_text(encoding="utf-8")
)
#: The code agent's system prompt, from ``code_prompts.yaml`` beside this module.
CODE_SYSTEM_PROMPT: str = _PROMPTS["system"]
#: Worked examples shown before every task: arithmetic in Python, a fact looked up in code.
CODE_DEMONSTRATIONS: list[Message] = [dict(m) for m in _PROMPTS["demonstrations"]]

#: A reply ends before the observation it must wait for.
STOP = ("\nObservation:", "Observation:", "<end_code>")
_FENCE_RE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)(?:```|\Z)", re.S)
_BARE_FINAL_RE = re.compile(r"^\s*final_answer\(.*\)\s*$", re.M)


@dataclass
class CodeAction:
    """One parsed reply: the thought and the code block, or why there is none."""

    text: str
    thought: str
    code: str | None = None
    error: str | None = None


def parse_code_action(text: str) -> CodeAction:
    """The thought before the first fenced Python block, and that block. Without a fence, a
    line that is only a ``final_answer(...)`` call is the code (small models drop fences)."""
    fence = _FENCE_RE.search(text)
    if fence and fence.group(1).strip():
        return CodeAction(text, text[: fence.start()].strip(), code=fence.group(1).strip())
    bare = _BARE_FINAL_RE.search(text)
    if bare:
        return CodeAction(text, text[: bare.start()].strip(), code=bare.group(0).strip())
    return CodeAction(text, text.strip(), error="no Python code block found")


def code_error_message(error: str) -> str:
    """The observation an agent gets for a reply without code."""
    return (
        f"Error: {error}. Write a Thought, then one block:\n```python\n# your code\n```\n"
        "Call final_answer(answer) in the code when you know the answer."
    )


def lend_retrieve(corpus: Corpus | None) -> Callable[..., str]:
    """``retrieve(query, k=3)`` for the sandbox: the corpus' passages as text. The code picks
    the arguments, so every one is checked here, on the host."""

    def retrieve(query: str, k: int = 3) -> str:
        if not isinstance(query, str) or not query.strip():
            raise ValueError("retrieve(query) needs a non-empty string")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ValueError(f"retrieve: k must be an integer from 1 to {MAX_K}")
        if corpus is None:
            raise RuntimeError("no document collection is available in this episode")
        return format_documents(corpus.search(query[:1000], k))

    return retrieve


@dataclass
class _Lent:
    """The functions a session lends its code, and what the last run did with them: the
    ``final_answer`` it gave (the last call counts) and how many times it called ``retrieve``."""

    search: Callable[..., str]
    answer: str | None = None
    retrievals: int = 0

    def retrieve(self, *args: Any, **kwargs: Any) -> str:
        self.retrievals += 1
        return self.search(*args, **kwargs)

    def final_answer(self, answer: Any = None) -> str:
        if isinstance(answer, dict | list):
            raise TypeError("final_answer(answer) takes a number or a short text")
        self.answer = str(answer).strip()
        return self.answer


@dataclass
class _Worker:
    """An episode's sandbox session with its lent functions."""

    session: Any
    lent: _Lent

    def run(self, code: str) -> tuple[str, bool, str | None]:
        """(observation, failed, final answer if the code gave one); ``lent.retrievals`` then
        counts this run's ``retrieve`` calls."""
        self.lent.answer, self.lent.retrievals = None, 0
        result = self.session.run(code)
        failed = result.killed or result.error is not None
        return result.observation(), failed, None if failed else self.lent.answer


def _worker(settings: LoopSettings, corpus: Corpus | None) -> _Worker:
    from sandbox import Session

    lent = _Lent(lend_retrieve(corpus))
    functions = {"retrieve": lent.retrieve, "final_answer": lent.final_answer}
    session = Session(timeout=settings.sandbox_timeout, host_functions=functions)
    return _Worker(session, lent)


class CodeState(TypedDict):
    episodes: list[Episode]
    replies: dict[int, list[str]]


@dataclass
class CodeContext:
    engine: Engine
    settings: LoopSettings
    corpus: Corpus | None
    workers: dict[int, _Worker] = field(default_factory=dict)
    code: dict[int, list[str]] = field(default_factory=dict)  # code that ran, per episode
    progress: Callable[[int], None] | None = None

    def worker(self, index: int) -> _Worker:
        if index not in self.workers:
            self.workers[index] = _worker(self.settings, self.corpus)
        return self.workers[index]

    def close(self, index: int | None = None) -> None:
        for i in [index] if index is not None else list(self.workers):
            worker = self.workers.pop(i, None)
            if worker is not None:
                worker.session.close()


def _trial(ctx: CodeContext, index: int, action: CodeAction) -> tuple[bool, str]:
    """(valid, outcome) of a candidate, run in a scratch session after the episode's code."""
    if action.code is None:
        return False, action.error or ""
    scratch = _worker(ctx.settings, ctx.corpus)
    try:
        for earlier in ctx.code.get(index, []):
            scratch.run(earlier)
        output, failed, answer = scratch.run(action.code)
    finally:
        scratch.session.close()
    return not failed, answer if answer is not None else output


def think(state: CodeState, runtime: Runtime[CodeContext]) -> dict[str, Any]:
    """Ask the model for every running episode's next reply (one batched call)."""
    ctx, cfg = runtime.context, runtime.context.settings
    running = [i for i, e in enumerate(state["episodes"]) if e.status == "running"]
    sc = cfg.candidates > 1
    requests = [
        ChatRequest(
            messages=state["episodes"][i].messages,
            n=cfg.candidates if sc else 1,
            temperature=cfg.candidate_temperature if sc else cfg.temperature,
            max_tokens=cfg.max_tokens,
            stop=STOP,
            seed=cfg.seed + state["episodes"][i].steps,
            prefix=state["episodes"][i].prefix if state["episodes"][i].steps == 0 else None,
        )
        for i in running
    ]
    results = ctx.engine.generate(requests, progress=False) if requests else []
    replies = {
        i: [(request.prefix or "") + text for text in result.texts]
        for i, request, result in zip(running, requests, results, strict=True)
    }
    return {"replies": replies}


def act(state: CodeState, runtime: Runtime[CodeContext]) -> dict[str, Any]:
    """Parse each reply, choose among candidates, run the code, append the observation."""
    ctx, cfg = runtime.context, runtime.context.settings
    episodes = list(state["episodes"])
    for i, texts in state["replies"].items():
        episode = episodes[i]
        actions = [parse_code_action(text) for text in texts]
        chosen = 0
        if len(actions) > 1:
            tried: dict[str, tuple[bool, str]] = {}  # identical blocks run once
            outcomes = []
            for a in actions:
                key = a.code if a.code is not None else a.text
                if key not in tried:
                    tried[key] = _trial(ctx, i, a)
                outcomes.append(tried[key])
            chosen = choose_action(outcomes)
            valid = sum(ok for ok, _ in outcomes)
            episode.candidates.append({"step": episode.steps, "valid": valid, "chosen": chosen})
        action = actions[chosen]
        episode.steps += 1
        if action.code is None:
            episode.parse_errors += 1
            episode.messages.append({"role": "assistant", "content": action.text.strip()})
            error = code_error_message(action.error or "no Python code block found")
            episode.messages.append({"role": "user", "content": error})
        else:
            shown = f"{action.thought}\n```python\n{action.code}\n```".strip()
            episode.messages.append({"role": "assistant", "content": shown})
            worker = ctx.worker(i)
            output, failed, answer = worker.run(action.code)
            episode.used("python_exec")
            episode.used("retrieve", worker.lent.retrievals)
            episode.exec_errors += failed
            if answer is not None:
                episode.status, episode.answer = "answered", answer
                ctx.close(i)
                if ctx.progress:
                    ctx.progress(1)
                continue
            if not failed:
                ctx.code.setdefault(i, []).append(action.code)
            observation = clip(output, cfg.observation_chars)
            episode.messages.append({"role": "user", "content": f"Observation:\n{observation}"})
        if episode.steps >= cfg.max_steps:
            episode.status = "step_limit"
            ctx.close(i)
            if ctx.progress:
                ctx.progress(1)
    return {"episodes": episodes, "replies": {}}


_COMPILED = None


def build_code_graph() -> StateGraph:
    """think → act → (think again while any episode runs), with this module's nodes."""
    return build_agent_graph(think, act, CodeState, CodeContext)


def _compiled() -> Any:
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = build_code_graph().compile()
    return _COMPILED


def start_code_messages(
    question: str,
    system_prompt: str = CODE_SYSTEM_PROMPT,
    demonstrations: Sequence[Message] = CODE_DEMONSTRATIONS,
) -> list[Message]:
    """The opening of an episode: system prompt, worked examples, then the task."""
    system: Message = {"role": "system", "content": system_prompt}
    return [system, *(dict(m) for m in demonstrations), {"role": "user", "content": question}]


def run_code_agent(
    engine: Engine,
    questions: Sequence[str],
    *,
    settings: LoopSettings | None = None,
    corpus: Corpus | None = None,
    prefixes: Sequence[str | None] | None = None,
    system_prompt: str = CODE_SYSTEM_PROMPT,
    demonstrations: Sequence[Message] = CODE_DEMONSTRATIONS,
    progress: bool = False,
    desc: str = "code agent",
) -> list[Episode]:
    """Run the code agent on every question, all episodes batched step by step.

    Args:
        engine: The model acting as the agent.
        questions: One task per episode.
        settings: Step limit, sampling and self-consistency (``complete_calls`` is unused).
        corpus: What ``retrieve`` searches inside the code; without one it raises there.
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
        questions, prefixes, lambda q: start_code_messages(q, system_prompt, demonstrations)
    )
    if not episodes:
        return []
    bar = tqdm(total=len(episodes), desc=desc, unit="task", disable=not progress)
    context = CodeContext(engine, settings, corpus, progress=bar.update)
    return run_lockstep(_compiled(), episodes, context, settings.max_steps, bar)
