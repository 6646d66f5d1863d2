"""Simulated customer-service dialogues: an agent with tools talks to an LLM customer.

A dialogue opens with the agent's greeting; then the customer (a model given the task's brief)
and the agent take turns. In its turn the agent may call the domain's tools one at a time (each
call's result comes back as a ``tool`` message) before it writes to the customer. It ends when
the customer writes ``###STOP###`` (τ²-bench's end marker: the simulator is told to once its
request is handled or clearly cannot be), the agent transfers to a human, answers ``max_turns``
times, or calls tools ``max_tool_calls`` times in one turn without answering.

The simulator plays the task's customer (persona, reason for calling, what it knows) and only
the customer: its first message is started for it (``Hi, ``) so it cannot end the chat before it
began, and a message that speaks as the agent ("How can I help you?", an ``AGENT:`` line) loses
those sentences; when nothing of the customer is left it is asked again at a higher temperature,
and a simulator that still cannot stay in role ends the dialogue as ``customer_failed``.

Like the agent loop, the dialogues of a batch advance in lockstep through a small LangGraph graph
(``agent`` and ``customer`` nodes), so every step is one batched engine call per role.

The agent's system prompt holds the domain policy and, when a ``guide`` is given, the strategies
retrieved for the conversation so far (see :mod:`strategies`); which strategies each reply saw
is recorded with the dialogue, so a strategy's effect can be traced to the replies it shaped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

import yaml
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from tqdm.auto import tqdm

from agents.episodes.agent_loop import clip, parse_action
from agents.models.base import ChatRequest, Engine, Message
from agents.models.chat_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from tools.base import ToolContext, call_tool, tool_message
from tools.service import ServiceDomain, ServiceTask

_PROMPTS: dict[str, str] = yaml.safe_load(
    Path(__file__).with_name("dialogue_prompts.yaml").read_text(encoding="utf-8")
)
GREETING = _PROMPTS["greeting"]
CUSTOMER_STOP = "###STOP###"
TRANSFER_TOOL = "transfer_to_human_agents"

# A strategy the agent sees: (library id, text).
Guidance = list[tuple[int, str]]
Guide = Callable[[Sequence[Message]], Guidance]

# Prompts, from ``dialogue_prompts.yaml`` beside this module.
AGENT_PROMPT = _PROMPTS["agent_system"]
GUIDANCE_HEADER = _PROMPTS["guidance_header"]
CUSTOMER_PROMPT = _PROMPTS["customer_system"]
CUSTOMER_OPEN = _PROMPTS["customer_open"]
CUSTOMER_NEXT = _PROMPTS["customer_next"]
CUSTOMER_ANSWER = _PROMPTS["customer_answer"]
# The customer's first message is started for it: small simulators otherwise answer as the agent.
CUSTOMER_OPENING_PREFIX = _PROMPTS["customer_opening_prefix"]


@dataclass
class DialogueSettings:
    """Limits and sampling of a simulated dialogue.

    Attributes:
        max_turns: Agent messages to the customer before the dialogue is cut.
        max_tool_calls: Tool calls in one agent turn before the dialogue is cut.
        max_tokens: Tokens per agent reply.
        customer_max_tokens: Tokens per customer message.
        temperature: Sampling temperature of the agent (the customer samples at 0 too: the same
            brief gives the same customer, so two agents meet the same person).
        observation_chars: Tool results are cut to this many characters.
        seed: Base seed of the agent's sampling.
        customer_retries: Times a customer message with nothing of the customer left in it
            (it spoke as the agent) is asked again, sampled at temperature 0.7.
    """

    max_turns: int = 4
    max_tool_calls: int = 3
    max_tokens: int = 192
    customer_max_tokens: int = 96
    temperature: float = 0.0
    observation_chars: int = 1200
    seed: int = 0
    customer_retries: int = 2


EndReason = Literal[
    "customer_stop", "transfer", "max_turns", "tool_limit", "customer_failed", "context"
]


@dataclass
class Dialogue:
    """One simulated conversation about one task.

    Attributes:
        task: The customer's task.
        messages: The agent's view without its system prompt: the greeting, customer (``user``)
            messages, agent replies (``assistant``, text or one tool call) and ``tool`` results.
        guidance: Per agent reply (in order), the ids of the strategies its prompt held.
        turns: Indices in ``messages`` of the agent's replies to the customer's messages
            (``messages[:i]`` ends with a customer message: a scenario prefix).
        ended: Why it ended, once it has.
        tool_errors: Tool calls whose result was an error.
        parse_errors: Replies that tried to call a tool but whose call could not be read.
    """

    task: ServiceTask
    messages: list[Message] = field(default_factory=list)
    guidance: list[list[int]] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    ended: EndReason | None = None
    tool_errors: int = 0
    parse_errors: int = 0
    calls_this_turn: int = 0

    @property
    def waiting_for(self) -> Literal["agent", "customer", "nobody"]:
        if self.ended:
            return "nobody"
        last = self.messages[-1]
        return "customer" if last["role"] == "assistant" and not last.get("tool_calls") else "agent"

    def summary(self) -> dict[str, Any]:
        return {
            "task": self.task.id,
            "ended": self.ended,
            "agent_turns": len(self.turns),
            "tool_calls": sum(bool(m.get("tool_calls")) for m in self.messages),
            "tool_errors": self.tool_errors,
            "parse_errors": self.parse_errors,
        }


# ---------------------------------------------------------------------------- prompts


def agent_system_prompt(domain: ServiceDomain, guidance: Guidance = ()) -> str:
    """The agent's system message: role, policy, and the retrieved strategies if any."""
    prompt = AGENT_PROMPT.format(domain=domain.name, policy=domain.policy.strip())
    if guidance:
        lines = "\n".join(f"- {text}" for _, text in guidance)
        prompt = f"{prompt}\n\n{GUIDANCE_HEADER}\n{lines}"
    return prompt


def conversation_text(messages: Sequence[Message], limit: int = 4000) -> str:
    """A conversation as plain text for judges and strategy writers (tool results cut short)."""
    lines = []
    for m in messages:
        if m["role"] == "system":
            continue
        if m["role"] == "tool":
            lines.append(f"TOOL RESULT ({m.get('name', '')}): {clip(str(m['content']), 300)}")
        elif m["role"] == "user":
            lines.append(f"CUSTOMER: {m['content']}")
        else:
            lines.append(f"AGENT: {reply_text(m)}")
    return clip("\n".join(lines), limit)


def reply_text(message: Message) -> str:
    """An agent reply as text: its message, or the tool call it makes."""
    calls = message.get("tool_calls") or []
    text = str(message.get("content") or "").strip()
    if not calls:
        return text
    rendered = []
    for call in calls:
        fn = call.get("function", {})
        arguments = fn.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        rendered.append(f"[calls {fn.get('name', '')} with {arguments}]")
    return " ".join([text, *rendered]).strip()


def customer_messages(
    task: ServiceTask, messages: Sequence[Message], *, answer: bool = False
) -> list[Message]:
    """The customer's prompt: its brief, and the conversation as a transcript to continue;
    with ``answer``, asked to answer the agent's question rather than for its next message.

    The customer never sees tool calls or their results, only what the agent writes to it. A
    transcript with named speakers, rather than the chat with roles swapped, keeps small models
    from answering as the agent or repeating the agent's words.
    """
    system = CUSTOMER_PROMPT.format(brief=task.customer_brief())
    lines = []
    for m in messages:
        if m["role"] == "user":
            lines.append(f"YOU (customer): {m['content']}")
        elif m["role"] == "assistant" and not m.get("tool_calls"):
            lines.append(f"AGENT: {m.get('content') or ''}")
    opening = not any(m["role"] == "user" for m in messages)
    ask = CUSTOMER_OPEN if opening else CUSTOMER_ANSWER if answer else CUSTOMER_NEXT
    user = "Conversation so far:\n" + "\n".join(lines) + f"\n\n{ask}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# ---------------------------------------------------------------------------- replies


def read_reply(
    text: str, tool_names: set[str], call_id: str, calls: list[dict[str, Any]] | None = None
) -> tuple[Message, bool]:
    """One agent reply as a message, and whether it tried but failed to call a tool.

    A readable call to a known tool becomes a ``tool_calls`` message (any words before it stay
    as its content, so writing and calling at once can be seen by the policy checks). Anything
    else is a message to the customer. ``calls`` are the structured tool calls an endpoint
    returned, if any; the first one wins over anything in the text.
    """
    if calls:
        call = {**calls[0], "id": call_id}
        return {"role": "assistant", "content": text.strip(), "tool_calls": [call]}, False
    action = parse_action(text, call_id)
    if action.call is not None and action.call["function"]["name"] in tool_names:
        return {"role": "assistant", "content": action.thought, "tool_calls": [action.call]}, False
    attempted = TOOL_CALL_OPEN in text or (action.call is None and '{"name"' in text)
    content = text.replace(TOOL_CALL_OPEN, "").replace(TOOL_CALL_CLOSE, "").strip()
    return {"role": "assistant", "content": content}, attempted


def agent_requests(
    domain: ServiceDomain,
    prefixes: Sequence[Sequence[Message]],
    guidance: Sequence[Guidance],
    settings: DialogueSettings,
) -> list[ChatRequest]:
    """One request per conversation prefix for the agent's next reply."""
    return [
        ChatRequest(
            messages=[
                {"role": "system", "content": agent_system_prompt(domain, g)},
                *prefix,
            ],
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            stop=(TOOL_CALL_CLOSE,),
            seed=settings.seed + len(prefix),
            tools=domain.schemas(),
        )
        for prefix, g in zip(prefixes, guidance, strict=True)
    ]


def next_replies(
    engine: Engine,
    domain: ServiceDomain,
    prefixes: Sequence[Sequence[Message]],
    guidance: Sequence[Guidance] | None = None,
    settings: DialogueSettings | None = None,
    progress: bool = False,
) -> list[Message]:
    """The agent's next reply to each prefix, without running any tool (one batched call)."""
    settings = settings or DialogueSettings()
    guidance = guidance if guidance is not None else [[] for _ in prefixes]
    requests = agent_requests(domain, prefixes, guidance, settings)
    results = engine.generate(requests, progress=progress) if requests else []
    names = {t.name for t in domain.tools}
    return [
        read_reply(r.text, names, f"call_{len(p)}", r.completions[0].tool_calls)[0]
        for p, r in zip(prefixes, results, strict=True)
    ]


# ---------------------------------------------------------------------------- graph


class DialogueState(TypedDict):
    dialogues: list[Dialogue]


@dataclass
class DialogueContext:
    agent: Engine
    customer: Engine
    domain: ServiceDomain
    settings: DialogueSettings
    guide: Guide | None
    contexts: dict[int, ToolContext] = field(default_factory=dict)
    progress: Callable[[int], Any] | None = None

    def finish(self, dialogue: Dialogue, reason: EndReason) -> None:
        dialogue.ended = reason
        if self.progress:
            self.progress(1)


def agent_node(state: DialogueState, runtime: Runtime[DialogueContext]) -> dict[str, Any]:
    """Every dialogue waiting on the agent gets its next reply; tool calls run at once."""
    ctx = runtime.context
    cfg = ctx.settings
    dialogues = state["dialogues"]
    waiting = [i for i, d in enumerate(dialogues) if d.waiting_for == "agent"]
    prefixes = [dialogues[i].messages for i in waiting]
    guidance = [ctx.guide(p) if ctx.guide else [] for p in prefixes]
    requests = agent_requests(ctx.domain, prefixes, guidance, cfg)
    results = ctx.agent.generate(requests, progress=False) if requests else []
    names = {t.name for t in ctx.domain.tools}
    for i, g, result in zip(waiting, guidance, results, strict=True):
        d = dialogues[i]
        if result.completions[0].context_full:  # the conversation no longer fits the agent
            ctx.finish(d, "context")
            continue
        call_id = f"call_{len(d.messages)}"
        reply, attempted = read_reply(result.text, names, call_id, result.completions[0].tool_calls)
        d.parse_errors += attempted
        d.guidance.append([sid for sid, _ in g])
        if d.messages[-1]["role"] == "user":
            d.turns.append(len(d.messages))
        d.messages.append(reply)
        if not reply.get("tool_calls"):
            d.calls_this_turn = 0
            if len(d.turns) >= cfg.max_turns:
                ctx.finish(d, "max_turns")
            continue
        call = reply["tool_calls"][0]
        context = ctx.contexts.setdefault(i, ctx.domain.tool_context())
        result_message = call_tool(call, ctx.domain.tools, context)
        content = str(result_message.get("content", ""))
        d.tool_errors += content.startswith("Error")
        d.messages.append(
            tool_message(call_id, call["function"]["name"], clip(content, cfg.observation_chars))
        )
        d.calls_this_turn += 1
        if call["function"]["name"] == TRANSFER_TOOL and not content.startswith("Error"):
            ctx.finish(d, "transfer")
        elif d.calls_this_turn >= cfg.max_tool_calls:
            ctx.finish(d, "tool_limit")
    return {"dialogues": dialogues}


def customer_node(state: DialogueState, runtime: Runtime[DialogueContext]) -> dict[str, Any]:
    """Every dialogue waiting on the customer gets the customer's next message.

    A message that speaks as the agent loses those sentences; one with nothing of the customer
    left is asked again (sampled, ``customer_retries`` times), and then ends its dialogue as
    ``customer_failed``. A customer does not hang up on a question: ``###STOP###`` right after
    the agent asked something is asked again as an answer, and stands only if every retry
    stops too.
    """
    ctx = runtime.context
    dialogues = state["dialogues"]
    waiting = [i for i, d in enumerate(dialogues) if d.waiting_for == "customer"]
    said: dict[int, str | None] = {}
    stopped: set[int] = set()  # stopped on a question at least once
    retries = ctx.settings.customer_retries
    for attempt in range(retries + 1):
        asking = [i for i in waiting if said.get(i) is None]
        if not asking:
            break
        requests = [
            customer_request(dialogues[i], ctx.settings, attempt, answer=i in stopped)
            for i in asking
        ]
        results = ctx.customer.generate(requests, progress=False)
        for i, request, result in zip(asking, requests, results, strict=True):
            text = customer_message(result.text, request.prefix)
            asked = agent_asked(dialogues[i].messages[-1].get("content") or "")
            if text == CUSTOMER_STOP and asked and attempt < retries:
                stopped.add(i)
                text = None
            said[i] = text
    for i in waiting:
        d, text = dialogues[i], said.get(i)
        if text is None:
            ctx.finish(d, "customer_stop" if i in stopped else "customer_failed")
        elif text == CUSTOMER_STOP:
            ctx.finish(d, "customer_stop")
        else:
            d.messages.append({"role": "user", "content": text})
    return {"dialogues": dialogues}


_QUESTION = re.compile(
    r"\?|\b(?:please|kindly) (?:provide|share|confirm|tell|give|let me know)\b|"
    r"\bcould you\b|\bcan you\b|\bwould you\b",
    re.I,
)


def agent_asked(text: str) -> bool:
    """Whether the agent's message asks the customer something (a question or a request)."""
    return bool(_QUESTION.search(text))


def customer_request(
    dialogue: Dialogue, settings: DialogueSettings, attempt: int, *, answer: bool = False
) -> ChatRequest:
    """The customer's next message; a retry (``attempt`` > 0) samples instead of greedy decoding,
    and with ``answer`` asks for an answer to the agent's question instead of an ending."""
    opening = not any(m["role"] == "user" for m in dialogue.messages)
    return ChatRequest(
        messages=customer_messages(dialogue.task, dialogue.messages, answer=answer),
        temperature=0.7 if attempt else 0.0,
        max_tokens=settings.customer_max_tokens,
        stop=("\nAGENT:", "\nAgent:"),
        seed=settings.seed + 7919 * attempt + len(dialogue.messages),
        prefix=CUSTOMER_OPENING_PREFIX if opening else None,
    )


_STOP = re.compile(r"#{2,}\s*STOP\s*#*", re.I)
_LABEL = re.compile(r"^\s*(YOU \(customer\)|YOU|Customer|CUSTOMER|User|USER)\s*:\s*")
_AGENT_LINE = re.compile(
    r"(?:^|\n|\s)(?:AGENT|Agent|Assistant|ASSISTANT|Customer service|Support)\s*:", re.M
)
_AGENT_WORDS = re.compile(
    r"how (?:can|may|could) I (?:help|assist)|thank you for (?:contacting|reaching out)|"
    r"is there anything else I can|I(?:'m| am) (?:happy|glad) to (?:help|assist)|"
    r"I can help you with that|"
    r"I(?:'m| am) (?:a|an|the|your) (?:customer service|support|service) (?:agent|representative)",
    re.I,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def speaks_as_agent(text: str) -> bool:
    """Whether a sentence sounds like the agent, not the customer ("How can I help you?")."""
    return bool(_AGENT_WORDS.search(text) or _AGENT_LINE.search(text))


def customer_text(text: str) -> str:
    """A simulated customer's message without a speaker label, quotes, or an agent's line after
    it (small models continue the transcript with ``AGENT: ...``)."""
    text = _LABEL.sub("", text.strip())
    agent = _AGENT_LINE.search(text)
    if agent:
        text = text[: agent.start()]
    return text.strip().strip('"').strip()


#: What the simulator is told to do, sentence by sentence: a small model sometimes repeats it.
_INSTRUCTIONS = [
    line.strip().lower()
    for text in (CUSTOMER_OPEN, CUSTOMER_NEXT, CUSTOMER_ANSWER)
    for line in [text, *re.split(r"(?<=[.:!?(])\s*", text)]
    if len(line.strip()) > 12
]


def echoes_instructions(sentence: str) -> bool:
    """Whether a sentence repeats the simulator's instructions ("The agent asked you something:
    answer it as the customer...") rather than saying anything as the customer."""
    from difflib import SequenceMatcher

    parts = [p.strip() for p in re.split(r"[:(]", sentence.lower()) if len(p.strip()) > 12]
    return any(
        SequenceMatcher(None, part, line).ratio() > 0.75 for part in parts for line in _INSTRUCTIONS
    )


def customer_message(text: str, prefix: str | None = None) -> str | None:
    """What the customer said: its message, :data:`CUSTOMER_STOP` when it ends the chat, or None
    when nothing of the customer is left once the sentences spoken as the agent are dropped.

    ``prefix`` is the start the message was given (the opening's ``Hi, ``); it is put back.
    """
    if _STOP.search(text) and not prefix:
        return CUSTOMER_STOP
    text = _STOP.sub("", customer_text(text)).strip()
    kept = " ".join(
        s
        for s in _SENTENCE.split(text)
        if s.strip() and not speaks_as_agent(s) and not echoes_instructions(s)
    )
    if prefix and kept:
        kept = prefix + kept
    return kept.strip() or None


def route(state: DialogueState) -> Literal["agent", "customer", "__end__"]:
    waiting = {d.waiting_for for d in state["dialogues"]}
    if "agent" in waiting:
        return "agent"
    return "customer" if "customer" in waiting else END


def build_dialogue_graph() -> StateGraph:
    """customer → agent ⇄ (agent again after a tool call | customer) until every dialogue ends."""
    graph = StateGraph(DialogueState, context_schema=DialogueContext)
    graph.add_node("agent", agent_node)
    graph.add_node("customer", customer_node)
    graph.add_edge(START, "customer")  # the greeting is already there: the customer opens
    graph.add_conditional_edges("agent", route)
    graph.add_conditional_edges("customer", route)
    return graph


_COMPILED = None


def _compiled() -> Any:
    global _COMPILED
    if _COMPILED is None:
        _COMPILED = build_dialogue_graph().compile()
    return _COMPILED


def run_dialogues(
    agent: Engine,
    customer: Engine,
    domain: ServiceDomain,
    tasks: Sequence[ServiceTask],
    *,
    guide: Guide | None = None,
    settings: DialogueSettings | None = None,
    progress: bool = False,
    desc: str = "dialogues",
) -> list[Dialogue]:
    """Simulate one dialogue per task, all batched step by step.

    Args:
        agent: The model acting as the service agent.
        customer: The model playing the customers.
        domain: Policy, tools and database (each dialogue gets a fresh copy of the database).
        tasks: One customer task per dialogue.
        guide: Strategies for a conversation prefix, put into the agent's prompt per reply.
        settings: Limits and sampling.
        progress: Show a progress bar over finished dialogues.
        desc: The progress bar's label.
    """
    settings = settings or DialogueSettings()
    dialogues = [
        Dialogue(task, messages=[{"role": "assistant", "content": GREETING}]) for task in tasks
    ]
    if not dialogues:
        return []
    bar = tqdm(total=len(dialogues), desc=desc, unit="dialogue", disable=not progress)
    context = DialogueContext(agent, customer, domain, settings, guide, progress=bar.update)
    # each turn: ≤ max_tool_calls + 1 agent steps and one customer step
    limit = (settings.max_turns + 1) * (settings.max_tool_calls + 2) + 4
    try:
        final = _compiled().invoke(
            {"dialogues": dialogues}, context=context, config={"recursion_limit": limit}
        )
    finally:
        for c in context.contexts.values():
            c.close()
        bar.close()
    return list(final["dialogues"])
