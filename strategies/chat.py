"""The audit chat behind ``agents audit``: slash commands, and free-form questions to a model.

Each line a reviewer types is one turn of a small LangGraph graph:

* a ``/command`` runs deterministically (no model needed);
* free text goes to the auditor agent, a model -> tools -> model loop whose tools are the
  :class:`~strategies.audit.Auditor` operations, ending with the model's answer;
* free text with no model configured gets a one-sentence pointer to ``--model``.

Destructive actions (reject, edit), whether typed or requested by the model, pause the graph with
a LangGraph ``interrupt`` carrying a ``[y/N]`` question; the driver reads the reviewer's next line
as the answer and resumes the graph with it. Only ``y``/``yes`` goes ahead. Nodes that can pause
do nothing irreversible before their questions, because LangGraph re-runs a paused node from the
start when it resumes.
"""

from __future__ import annotations

import itertools
import json
import logging
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt

from agents.models.base import ChatRequest, Engine, EngineError, Message
from strategies.audit import Auditor, first_words
from strategies.library import StrategyHit, StrategyNotFound
from strategies.records import STATUSES
from tools.base import Tool, ToolContext, ToolError, call_tool, tool, tool_message

logger = logging.getLogger(__name__)

HELP = """\
Commands:
  /search QUERY        find strategies about something (every status)
  /show ID             everything about one strategy
  /why ID              why it exists: scenarios, replies, scores, authors
  /approve ID [note]   approve it so the student may use it
  /reject ID [reason]  reject it (asks to confirm)
  /edit ID NEW TEXT    rewrite its guidance as a new version (asks to confirm)
  /changes             versions written since the last audit
  /list [STATUS]       list strategies, optionally of one status
  /help                this text
  /quit                leave
Anything else is a question for the auditor model, when one is configured."""

COMMANDS = "/help, /search, /show, /why, /approve, /reject, /edit, /changes, /list, /quit"

AUDITOR_SYSTEM_PROMPT = """\
You help a human reviewer audit a library of customer-service strategies: short guidance a \
teacher model wrote so a small student model handles a situation well. Use the tools to look \
strategies up before you answer; never guess ids or contents. Rejecting or editing a strategy \
asks the reviewer to confirm. Answer briefly and cite strategy ids like #12."""

_YES = {"y", "yes"}
_HISTORY_MESSAGES = 12  # earlier free-form turns kept as context for the next question


class ChatInputError(ValueError):
    """A line the chat cannot act on; its message is shown to the reviewer."""


# ---------------------------------------------------------------------------- confirmation


def confirm(question: str) -> bool:
    """Pause the graph with ``question``; True when the reviewer answers y or yes."""
    answer = interrupt(question)
    return str(answer or "").strip().lower() in _YES


def _reject_question(strategy_id: int, text: str) -> str:
    return f"Reject strategy {strategy_id} ({first_words(text)})? [y/N]"


def _edit_question(strategy_id: int, text: str, new_text: str) -> str:
    new = first_words(new_text, 12)
    return f'Edit strategy {strategy_id} ({first_words(text)}) to "{new}"? [y/N]'


# ---------------------------------------------------------------------------- commands


def _parse_id(text: str, usage: str) -> int:
    if not text:
        raise ChatInputError(f"Give a strategy id: {usage}.")
    try:
        return int(text.lstrip("#"))
    except ValueError:
        raise ChatInputError(f"{text!r} is not a strategy id (a whole number): {usage}.") from None


def _id_and_rest(rest: str, usage: str) -> tuple[int, str]:
    head, _, tail = rest.partition(" ")
    return _parse_id(head, usage), tail.strip()


def _cmd_help(auditor: Auditor, rest: str) -> str:
    return HELP


def _cmd_search(auditor: Auditor, rest: str) -> str:
    if not rest:
        raise ChatInputError("Say what to search for: /search QUERY.")
    return format_hits(auditor.search(rest))


def format_hits(hits: Sequence[StrategyHit]) -> str:
    """Search results, one line each: id, status, distance, situation, start of the text."""
    if not hits:
        return "No strategies found."
    return "\n".join(
        f"#{h.strategy.id} [{h.strategy.status}] (distance {h.distance:.2f}) "
        f"{h.strategy.situation} — {first_words(h.strategy.text, 12)}"
        for h in hits
    )


def _cmd_show(auditor: Auditor, rest: str) -> str:
    return auditor.show(_parse_id(rest, "/show ID")).format()


def _cmd_why(auditor: Auditor, rest: str) -> str:
    return auditor.why(_parse_id(rest, "/why ID"))


def _cmd_approve(auditor: Auditor, rest: str) -> str:
    strategy_id, note = _id_and_rest(rest, "/approve ID [note]")
    strategy = auditor.approve(strategy_id, note or None)
    return f"Strategy {strategy_id} is approved (version {strategy.version})."


def _cmd_reject(auditor: Auditor, rest: str) -> str:
    strategy_id, reason = _id_and_rest(rest, "/reject ID [reason]")
    current = auditor.library.get(strategy_id)
    if not confirm(_reject_question(strategy_id, current.text)):
        auditor.record("decline", strategy_id, proposed="reject", reason=reason or None)
        return f"Strategy {strategy_id} is unchanged."
    strategy = auditor.reject(strategy_id, reason or None)
    return f"Strategy {strategy_id} is rejected (version {strategy.version})."


def _cmd_edit(auditor: Auditor, rest: str) -> str:
    strategy_id, text = _id_and_rest(rest, "/edit ID NEW TEXT")
    if not text:
        raise ChatInputError(f"Give the new text: /edit {strategy_id} NEW TEXT.")
    current = auditor.library.get(strategy_id)
    if not confirm(_edit_question(strategy_id, current.text, text)):
        auditor.record("decline", strategy_id, proposed="edit", text=text)
        return f"Strategy {strategy_id} is unchanged."
    strategy = auditor.edit(strategy_id, text)
    return f"Strategy {strategy_id} is edited (version {strategy.version})."


def _cmd_changes(auditor: Auditor, rest: str) -> str:
    changes = auditor.changes_since_last_audit()
    if not changes:
        return "Nothing changed since the last audit."
    return "\n".join(change.format() for change in changes)


def _cmd_list(auditor: Auditor, rest: str) -> str:
    status = rest.strip().lower() or None
    if status is not None and status not in STATUSES:
        raise ChatInputError(f"Unknown status {status!r}; use one of {', '.join(STATUSES)}.")
    rows = auditor.list_strategies(status)
    if not rows:
        return "No strategies" + (f" with status {status}." if status else " yet.")
    return "\n".join(f"#{s.id} [{s.status}] v{s.version} {s.situation}" for s in rows)


CommandFn = Callable[[Auditor, str], str]
COMMAND_TABLE: dict[str, CommandFn] = {
    "help": _cmd_help,
    "search": _cmd_search,
    "show": _cmd_show,
    "why": _cmd_why,
    "approve": _cmd_approve,
    "reject": _cmd_reject,
    "edit": _cmd_edit,
    "changes": _cmd_changes,
    "list": _cmd_list,
}


# ---------------------------------------------------------------------------- agent tools


def _auditor(context: ToolContext) -> Auditor:
    auditor = context.get(Auditor)
    if auditor is None:
        raise ToolError("no strategy library is open")
    return auditor


@contextmanager
def _as_tool_errors() -> Iterator[None]:
    """Turn the errors a model can cause (unknown id, bad status) into observations."""
    try:
        yield
    except (LookupError, ValueError) as err:
        raise ToolError(str(err)) from None


@tool
def search_strategies(query: str, k: int = 5, *, context: ToolContext) -> str:
    """Search the strategy library (every status, rejected ones too) by meaning.

    Args:
        query: What to look for, e.g. "refund without a receipt".
        k: How many strategies to return (1 to 20).
    """
    if not 1 <= k <= 20:
        raise ToolError(f"k must be between 1 and 20, got {k}")
    if not query.strip():
        raise ToolError("the query is empty")
    with _as_tool_errors():
        return format_hits(_auditor(context).search(query.strip(), k))


@tool
def show_strategy(strategy_id: int, *, context: ToolContext) -> str:
    """Show one strategy: text, status, provenance, source scenarios and version history.

    Args:
        strategy_id: The strategy's id.
    """
    with _as_tool_errors():
        return _auditor(context).show(strategy_id).format()


@tool
def explain_strategy(strategy_id: int, *, context: ToolContext) -> str:
    """Explain why a strategy exists: its scenarios, the student's and teacher's replies, scores.

    Args:
        strategy_id: The strategy's id.
    """
    with _as_tool_errors():
        return _auditor(context).why(strategy_id)


@tool
def changes_since_last_audit(*, context: ToolContext) -> str:
    """List the strategy versions written since the last audit session."""
    with _as_tool_errors():
        return _cmd_changes(_auditor(context), "")


@tool
def approve_strategy(strategy_id: int, note: str | None = None, *, context: ToolContext) -> str:
    """Approve a strategy so the student may use it.

    Args:
        strategy_id: The strategy's id.
        note: Why it is approved.
    """
    with _as_tool_errors():
        strategy = _auditor(context).approve(strategy_id, note)
    return f"Strategy {strategy_id} is approved (version {strategy.version})."


@tool
def reject_strategy(strategy_id: int, reason: str | None = None, *, context: ToolContext) -> str:
    """Reject a strategy so the student never uses it (the reviewer is asked to confirm).

    Args:
        strategy_id: The strategy's id.
        reason: Why it is rejected.
    """
    with _as_tool_errors():
        strategy = _auditor(context).reject(strategy_id, reason)
    return f"Strategy {strategy_id} is rejected (version {strategy.version})."


@tool
def edit_strategy(
    strategy_id: int, text: str, reason: str | None = None, *, context: ToolContext
) -> str:
    """Rewrite a strategy's guidance as a new version (the reviewer is asked to confirm).

    Args:
        strategy_id: The strategy's id.
        text: The complete new guidance.
        reason: Why it is rewritten.
    """
    with _as_tool_errors():
        strategy = _auditor(context).edit(strategy_id, text, reason=reason)
    return f"Strategy {strategy_id} is edited (version {strategy.version})."


AUDIT_TOOLS: list[Tool] = [
    search_strategies,
    show_strategy,
    explain_strategy,
    changes_since_last_audit,
    approve_strategy,
    reject_strategy,
    edit_strategy,
]


def _arguments(call: dict[str, Any]) -> dict[str, Any]:
    raw = (call.get("function") or {}).get("arguments")
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw or "{}")
    except (TypeError, json.JSONDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def tool_call_question(call: dict[str, Any], auditor: Auditor) -> str | None:
    """The confirmation question for a destructive tool call, or None when it needs none.

    Calls whose strategy cannot be found need no question: the tool itself reports the error.
    """
    name = (call.get("function") or {}).get("name")
    if name not in ("reject_strategy", "edit_strategy"):
        return None
    arguments = _arguments(call)
    strategy_id = arguments.get("strategy_id")
    if not isinstance(strategy_id, int) or isinstance(strategy_id, bool):
        return None
    try:
        current = auditor.library.get(strategy_id)
    except StrategyNotFound:
        return None
    if name == "reject_strategy":
        return _reject_question(strategy_id, current.text)
    return _edit_question(strategy_id, current.text, str(arguments.get("text") or ""))


# ---------------------------------------------------------------------------- the turn graph


@dataclass
class ChatContext:
    """What every turn shares: the reviewer's auditor, the model (if any), the step limit."""

    auditor: Auditor
    engine: Engine | None
    max_agent_steps: int


class TurnState(TypedDict, total=False):
    """One chat turn: the line typed, the agent's conversation, and the lines to print."""

    line: str
    history: list[Message]
    messages: list[Message]
    steps: int
    replies: Annotated[list[str], operator.add]


def route_line(state: TurnState, runtime: Runtime[ChatContext]) -> str:
    """Commands to ``command``; free text to the agent, or to ``no_model`` without one."""
    if state["line"].startswith("/"):
        return "command"
    return "agent_model" if runtime.context.engine is not None else "no_model"


def command(state: TurnState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Run one slash command; bad input becomes a one-sentence reply."""
    name, _, rest = state["line"][1:].partition(" ")
    handler = COMMAND_TABLE.get(name.lower())
    if handler is None:
        return {"replies": [f"Unknown command /{name}; the commands are {COMMANDS}."]}
    try:
        return {"replies": [handler(runtime.context.auditor, rest.strip())]}
    except (LookupError, ValueError) as err:  # ChatInputError, StrategyNotFound, bad status
        return {"replies": [str(err)]}


def no_model(state: TurnState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Free text without a model: say how to get one."""
    return {
        "replies": [
            "Free-form questions need an auditor model (start it with "
            f"`agents audit --model SPEC`); the commands are {COMMANDS}."
        ]
    }


def agent_model(state: TurnState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Ask the model for its next step, offering the audit tools."""
    ctx = runtime.context
    assert ctx.engine is not None  # route_line sends free text here only with an engine
    messages = state.get("messages") or [
        {"role": "system", "content": AUDITOR_SYSTEM_PROMPT},
        *state.get("history", []),
        {"role": "user", "content": state["line"]},
    ]
    request = ChatRequest(
        messages=messages, tools=[t.schema for t in AUDIT_TOOLS], max_tokens=512, temperature=0.0
    )
    completion = ctx.engine.generate([request])[0].completions[0]
    steps = state.get("steps", 0) + 1
    reply: Message = {"role": "assistant", "content": completion.text}
    if completion.tool_calls:
        # Tool results are matched to calls by id; some engines leave ids out.
        reply["tool_calls"] = [
            {**call, "id": call.get("id") or f"call_{steps}_{i}"}
            for i, call in enumerate(completion.tool_calls)
        ]
    return {"messages": [*messages, reply], "steps": steps}


def after_model(
    state: TurnState, runtime: Runtime[ChatContext]
) -> Literal["agent_tools", "agent_answer"]:
    """Run the tools the model called, unless it answered or used up its steps."""
    last = state["messages"][-1]
    if last.get("tool_calls") and state["steps"] < runtime.context.max_agent_steps:
        return "agent_tools"
    return "agent_answer"


def agent_tools(state: TurnState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Run the model's tool calls; destructive ones only after the reviewer confirms.

    All questions are asked before any call runs, so resuming after an answer (which re-runs
    this node) repeats no action.
    """
    auditor = runtime.context.auditor
    calls = state["messages"][-1]["tool_calls"]
    declined: set[str] = set()
    for call in calls:
        question = tool_call_question(call, auditor)
        if question is not None and not confirm(question):
            declined.add(call["id"])
    context = ToolContext([auditor])
    results: list[Message] = []
    for call in calls:
        name = str((call.get("function") or {}).get("name") or "")
        if call["id"] in declined:
            strategy_id = _arguments(call).get("strategy_id")
            auditor.record("decline", strategy_id, proposed=name, via="agent")
            results.append(
                tool_message(call["id"], name, "The reviewer declined; nothing was changed.")
            )
        else:
            results.append(call_tool(call, AUDIT_TOOLS, context))
    return {"messages": [*state["messages"], *results]}


def agent_answer(state: TurnState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """The model's final text is the reply; the question and answer go into the audit log."""
    messages = state["messages"]
    last = messages[-1]
    answer = str(last.get("content") or "").strip()
    if last.get("tool_calls"):
        limit = runtime.context.max_agent_steps
        answer = (answer + "\n" if answer else "") + (
            f"(The auditor model stopped after {limit} steps without a final answer.)"
        )
    answer = answer or "(The auditor model gave no answer.)"
    called = [
        call["function"]["name"]
        for message in messages
        for call in message.get("tool_calls") or []
        if isinstance(call.get("function"), dict)
    ]
    runtime.context.auditor.record("ask", question=state["line"], answer=answer, tools=called)
    return {"replies": [answer]}


def build_graph() -> StateGraph:
    """The chat-turn graph (uncompiled)."""
    graph = StateGraph(TurnState, context_schema=ChatContext)
    graph.add_node("command", command)
    graph.add_node("no_model", no_model)
    graph.add_node("agent_model", agent_model)
    graph.add_node("agent_tools", agent_tools)
    graph.add_node("agent_answer", agent_answer)
    # The typed line picks the path: a command, the agent, or the no-model reply.
    graph.add_conditional_edges(START, route_line, ["command", "agent_model", "no_model"])
    # Commands and the no-model reply finish the turn at once.
    graph.add_edge("command", END)
    graph.add_edge("no_model", END)
    # The agent loops model -> tools -> model until it answers or reaches its step limit.
    graph.add_conditional_edges("agent_model", after_model)
    graph.add_edge("agent_tools", "agent_model")
    graph.add_edge("agent_answer", END)
    return graph


# ---------------------------------------------------------------------------- the driver


class AuditChat:
    """A reviewer's chat with a strategy library, driven by any iterable of input lines.

    Args:
        auditor: The reviewer's auditor (it logs everything done in the chat).
        engine: The auditor model for free-form questions; without one only commands work.
        max_agent_steps: Model calls allowed per free-form question.
    """

    def __init__(
        self, auditor: Auditor, engine: Engine | None = None, *, max_agent_steps: int = 6
    ) -> None:
        if max_agent_steps < 1:
            raise ValueError(f"max_agent_steps must be at least 1, got {max_agent_steps}.")
        self.auditor = auditor
        self.engine = engine
        self.max_agent_steps = max_agent_steps
        self._saver = InMemorySaver()
        self.graph = build_graph().compile(checkpointer=self._saver)
        self._context = ChatContext(auditor, engine, max_agent_steps)
        self._history: list[Message] = []
        self._turns = itertools.count(1)

    def greeting(self, changes: Sequence[object]) -> str:
        """The opening lines: the library, its strategies by status, and what changed."""
        library = self.auditor.library
        counts = {status: library.count([status]) for status in STATUSES}
        listed = ", ".join(f"{n} {status}" for status, n in counts.items() if n) or "none yet"
        return (
            f"Strategy library {library.name!r}: {sum(counts.values())} strategies ({listed}).\n"
            f"{len(changes)} change(s) since the last audit; type /changes to see them, "
            "/help for commands."
        )

    def run(self, lines: Iterable[str], write: Callable[[str], None] = print) -> None:
        """Chat until ``/quit`` or the end of ``lines``.

        Args:
            lines: The reviewer's input lines (stdin, or a list in tests); a confirmation
                question takes the next line as its answer.
            write: Where replies go.
        """
        feed = iter(lines)
        write(self.greeting(self.auditor.start_session()))
        for raw in feed:
            line = raw.strip()
            if not line:
                continue
            if line.lower() in ("/quit", "/exit", "/q"):
                break
            for reply in self.turn(line, feed, write):
                write(reply)

    def turn(self, line: str, answers: Iterator[str], write: Callable[[str], None]) -> list[str]:
        """Run one line through the graph; confirmation questions are written and answered from
        ``answers`` (no answer left counts as no). Returns the replies."""
        thread = f"turn-{next(self._turns)}"
        config: dict[str, Any] = {
            "configurable": {"thread_id": thread},
            # Two supersteps per agent step, plus routing and the answer.
            "recursion_limit": 2 * self.max_agent_steps + 8,
        }
        state: Any = {"line": line, "history": list(self._history), "replies": []}
        try:
            result = self.graph.invoke(state, config, context=self._context)  # type: ignore[arg-type]
            while result.get("__interrupt__"):
                write(str(result["__interrupt__"][0].value))
                answer = next(answers, "")
                result = self.graph.invoke(
                    Command(resume=answer),
                    config,  # type: ignore[arg-type]
                    context=self._context,
                )
        except EngineError as err:
            # An unreachable or failing model ends this question, not the reviewer's session.
            self._saver.delete_thread(thread)
            return [f"The auditor model failed ({err}); commands still work, see /help."]
        replies = list(result.get("replies", []))
        if not line.startswith("/") and self.engine is not None:
            self._history += [
                {"role": "user", "content": line},
                {"role": "assistant", "content": "\n".join(replies)},
            ]
            self._history = self._history[-_HISTORY_MESSAGES:]
        self._saver.delete_thread(thread)
        return replies
