"""Scoring a customer-service conversation: gold-action matching and rule-based policy checks.

Both read plain OpenAI-format message lists (assistant messages with ``tool_calls``, answered by
``role: tool`` messages carrying the same ``tool_call_id``), so they work on live episodes and on
stored trajectories alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tools.service.common import GoldAction, ServiceDomain, ServiceTask

_YES = re.compile(r"\byes\b|\bi confirm\b", re.IGNORECASE)


@dataclass(frozen=True)
class ActionScore:
    """How an agent's tool calls compare with a task's gold actions.

    Attributes:
        success: Every gold write action was called successfully (name and matching arguments)
            and no other write call succeeded; with no gold writes, success means no write call
            succeeded. Gold writes that fail on replay are not required.
        recall: Share of all gold actions, reads included, matched by some call (1.0 for a task
            without gold actions).
        matched: Gold actions matched.
        expected: Gold actions in the task.
        extra_writes: Successful write calls that match no gold write action.
    """

    success: bool
    recall: float
    matched: int
    expected: int
    extra_writes: int


@dataclass(frozen=True)
class Violation:
    """One breach of the service policy.

    Attributes:
        rule: ``unauthenticated_write``, ``unconfirmed_write``, ``other_user``,
            ``call_and_message`` or ``multiple_calls``.
        turn: Index of the offending assistant message in the message list.
        detail: What happened, for reports.
    """

    rule: str
    turn: int
    detail: str


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and raw.strip():
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _calls(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every tool call with its turn, arguments, whether it succeeded and its answer text."""
    answers = {
        str(m.get("tool_call_id")): str(m.get("content") or "")
        for m in messages
        if m.get("role") == "tool"
    }
    calls = []
    for turn, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            answer = answers.get(str(call.get("id")))
            calls.append(
                {
                    "name": str(function.get("name") or ""),
                    "arguments": _arguments(function.get("arguments")),
                    # An unanswered call never ran, so it cannot have succeeded.
                    "ok": answer is not None and not answer.lstrip().startswith("Error"),
                    "turn": turn,
                    "answer": answer or "",
                }
            )
    return calls


def tool_calls_of(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tool calls in a conversation, in order.

    Args:
        messages: OpenAI-format messages; call arguments may be JSON strings or dicts.

    Returns:
        ``{"name", "arguments" (dict), "ok", "turn"}`` per call, where ``ok`` means the answering
        tool message exists and does not start with "Error", and ``turn`` is the index of the
        assistant message that made the call.
    """
    return [{k: c[k] for k in ("name", "arguments", "ok", "turn")} for c in _calls(messages)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_number(value: Any) -> float | None:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _scalar_key(value: Any) -> Any:
    """A normal form of a scalar for order-insensitive comparison."""
    if isinstance(value, str):
        number = _as_number(value)
        return ("n", number) if number is not None else ("s", value.strip().lower())
    if _is_number(value):
        return ("n", float(value))
    return ("o", value)


def _same(gold: Any, got: Any) -> bool:
    """Whether an argument value matches the gold one (see ``score_actions``)."""
    if isinstance(gold, dict):
        return (
            isinstance(got, dict)
            and gold.keys() == got.keys()
            and all(_same(gold[k], got[k]) for k in gold)
        )
    if isinstance(gold, list):
        if not isinstance(got, list) or len(got) != len(gold):
            return False
        if all(not isinstance(v, dict | list) for v in gold + got):
            return sorted(map(_scalar_key, gold), key=repr) == sorted(
                map(_scalar_key, got), key=repr
            )
        return all(_same(g, a) for g, a in zip(gold, got, strict=True))
    if _is_number(gold) or _is_number(got):
        left, right = _as_number(gold), _as_number(got)
        return left is not None and right is not None and abs(left - right) < 1e-6
    if isinstance(gold, str) and isinstance(got, str):
        return gold.strip().lower() == got.strip().lower()
    return gold == got


def _matches(gold: GoldAction, call: dict[str, Any]) -> bool:
    # A gold call that fails on replay is matched by the same call failing the same way.
    return (
        (call["ok"] or not gold.succeeds)
        and call["name"] == gold.name
        and call["arguments"].keys() == gold.arguments.keys()
        and all(_same(v, call["arguments"][k]) for k, v in gold.arguments.items())
    )


def score_actions(
    task: ServiceTask, messages: Sequence[dict[str, Any]], write_tools: frozenset[str]
) -> ActionScore:
    """Compare an agent's tool calls with the task's gold actions.

    A call matches a gold action when the names are equal, the argument keys are the same, and
    every value matches: strings stripped and case-insensitive, numbers numerically, lists of
    scalars in any order, other lists element by element, dicts key by key. Only successful
    calls count, except for the gold calls that fail on replay (``GoldAction.succeeds`` false),
    which the agent's identical failing call matches. Each gold write action that succeeds
    needs its own successful call; reads may share one.

    Args:
        task: The task with its gold actions.
        messages: The conversation, in OpenAI format.
        write_tools: Names of the tools that change the database.
    """
    calls = _calls(messages)
    writes = [c for c in calls if c["ok"] and c["name"] in write_tools]
    used: set[int] = set()  # indices into ``writes`` already paired with a gold write
    matched = 0
    gold_writes_matched = True
    for gold in task.actions:
        if gold.name in write_tools and gold.succeeds:
            pick = next(
                (i for i, c in enumerate(writes) if i not in used and _matches(gold, c)), None
            )
            if pick is None:
                gold_writes_matched = False
            else:
                used.add(pick)
                matched += 1
        elif any(_matches(gold, c) for c in calls):
            matched += 1
    expected = len(task.actions)
    extra_writes = len(writes) - len(used)
    return ActionScore(
        success=gold_writes_matched and extra_writes == 0,
        recall=matched / expected if expected else 1.0,
        matched=matched,
        expected=expected,
        extra_writes=extra_writes,
    )


def _owner(db: dict[str, Any], arguments: dict[str, Any]) -> str | None:
    """The user an order, reservation or user id in the arguments belongs to, if known."""
    order_id = arguments.get("order_id")
    if isinstance(order_id, str) and order_id.strip() in db.get("orders", {}):
        return db["orders"][order_id.strip()]["user_id"]
    reservation_id = arguments.get("reservation_id")
    if isinstance(reservation_id, str):
        reservation = db.get("reservations", {}).get(reservation_id.strip().upper())
        if reservation is not None:
            return reservation["user_id"]
    user_id = arguments.get("user_id")
    if isinstance(user_id, str) and user_id.strip() in db.get("users", {}):
        return user_id.strip()
    return None


def _authenticated_as(domain: ServiceDomain, call: dict[str, Any]) -> str | None:
    """The user a successful authentication call identified, or None."""
    if not call["ok"] or call["name"] not in domain.auth_tools:
        return None
    user_id = call["arguments"].get("user_id")
    if isinstance(user_id, str) and user_id.strip():  # airline: the profile lookup itself
        return user_id.strip()
    answer = call["answer"].strip().strip('"')  # retail: the lookup answers with the user id
    return answer or None


def policy_violations(
    domain: ServiceDomain,
    messages: Sequence[dict[str, Any]],
    db: dict[str, Any] | None = None,
) -> list[Violation]:
    """Rule-based policy checks over one conversation.

    The rules, each reported at most once per assistant message:

    - ``unauthenticated_write``: a write call before any successful authentication call
      (retail: finding the user id by email or by name and zip; airline: looking up the user's
      profile by the user id they gave).
    - ``unconfirmed_write``: a write call whose latest preceding user message has no explicit
      "yes" (the word, any case) or "I confirm".
    - ``other_user``: once a user is authenticated, a call about an order, reservation or user
      id belonging to someone else, including authenticating a second user.
    - ``call_and_message``: an assistant message with both a tool call and text for the user.
    - ``multiple_calls``: an assistant message with more than one tool call.

    Calls are taken in order, so an authentication call earlier in the same message counts.

    Args:
        domain: The domain (its write and authentication tools, and its database).
        messages: The conversation, in OpenAI format.
        db: The database to look owners up in; the domain's pristine one when omitted.
    """
    db = domain.pristine_db() if db is None else db
    calls_by_turn: dict[int, list[dict[str, Any]]] = {}
    for call in _calls(messages):
        calls_by_turn.setdefault(call["turn"], []).append(call)
    violations: list[Violation] = []
    user: str | None = None
    last_user_text = ""
    for turn, message in enumerate(messages):
        if message.get("role") == "user":
            last_user_text = str(message.get("content") or "")
            continue
        if message.get("role") != "assistant":
            continue
        calls = calls_by_turn.get(turn, [])
        found: dict[str, str] = {}
        if len(calls) > 1:
            found["multiple_calls"] = f"{len(calls)} tool calls in one message"
        if calls and str(message.get("content") or "").strip():
            found["call_and_message"] = "a tool call and a message to the user at once"
        for call in calls:
            name = call["name"]
            if name in domain.write_tools:
                if user is None:
                    found.setdefault("unauthenticated_write", f"{name} before authentication")
                if not _YES.search(last_user_text):
                    found.setdefault("unconfirmed_write", f"{name} without an explicit yes")
            owner = _authenticated_as(domain, call) or _owner(db, call["arguments"])
            if user is not None and owner is not None and owner != user:
                found.setdefault("other_user", f"{name} concerns {owner}, not {user}")
            if user is None:
                user = _authenticated_as(domain, call)
        violations.extend(Violation(rule, turn, detail) for rule, detail in found.items())
    return violations
