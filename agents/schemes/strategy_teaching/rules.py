"""The rules of strategy teaching as functions: prompts, the judge's choice, the writer's lines.

Kept apart from the graph (:mod:`agents.schemes.strategy_teaching.graph`) so each rule is tested on
its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from agents.episodes.dialogue import conversation_text, reply_text
from agents.models.base import ChatRequest, Engine, Message
from agents.schemes.base import ask_parsed
from tools.service import ServiceDomain

#: Prompts of every role, from ``prompts.yaml`` beside this module.
PROMPTS: dict[str, str] = yaml.safe_load(Path(__file__).with_name("prompts.yaml").read_text())


def retrieval_query(messages: Sequence[Message], turns: int = 3) -> str:
    """What strategies are retrieved by: the last few customer and agent messages."""
    said = [
        str(m.get("content") or "")
        for m in messages
        if m["role"] in ("user", "assistant") and not m.get("tool_calls") and m.get("content")
    ]
    return "\n".join(said[-turns:])[-1500:]


# ---------------------------------------------------------------------------- judging


def system_prompt(key: str, domain: ServiceDomain, **extra: Any) -> str:
    """The prompt ``key`` with the domain's policy and name filled in."""
    return PROMPTS[key].format(policy=domain.policy.strip(), domain=domain.name, **extra)


def parse_choice(text: str) -> str | None:
    """``"A"`` or ``"B"``: the reply a judge chose (its answer continues the forced prefix)."""
    match = re.match(r"\W*(?:reply\s*)?([AB])\b", text.strip(), re.I)
    return match.group(1).upper() if match else None


def verdicts(
    judge: Engine,
    domain: ServiceDomain,
    prefixes: Sequence[Sequence[Message]],
    first: Sequence[Message],
    second: Sequence[Message],
    *,
    both_orders: bool = True,
    max_tokens: int = 4,
    progress: bool = False,
) -> list[list[float]]:
    """The judge's raw verdicts per pair: 1.0 where it picked ``first``, 0.0 where it picked
    ``second``, one per order it was shown (``[first as A, first as B]`` with ``both_orders``;
    otherwise one order, alternating by index); unreadable answers are left out, and identical
    replies are not asked about (an empty list)."""
    system = system_prompt("compare_system", domain)
    asks: list[tuple[int, bool]] = []  # (pair, first shown as B)
    for i, (x, y) in enumerate(zip(first, second, strict=True)):
        if reply_text(x) != reply_text(y):
            asks += [(i, False), (i, True)] if both_orders else [(i, i % 2 == 1)]
    requests = []
    for i, swap in asks:
        a, b = (second[i], first[i]) if swap else (first[i], second[i])
        user = PROMPTS["compare_user"].format(
            conversation=conversation_text(prefixes[i]), a=reply_text(a), b=reply_text(b)
        )
        requests.append(
            ChatRequest(
                messages=[
                    {"role": "system", "content": system},
                    {"role": "user", "content": user},
                ],
                max_tokens=max_tokens,
                prefix=PROMPTS["compare_prefix"],
            )
        )
    choices, _, _ = ask_parsed(judge, requests, parse_choice, 1, progress)
    found: list[list[float]] = [[] for _ in first]
    for (i, swap), choice in zip(asks, choices, strict=True):
        if choice is not None:
            found[i].append(1.0 if (choice == "B") == swap else 0.0)
    return found


def prefer(
    judge: Engine,
    domain: ServiceDomain,
    prefixes: Sequence[Sequence[Message]],
    first: Sequence[Message],
    second: Sequence[Message],
    *,
    both_orders: bool = True,
    max_tokens: int = 4,
    progress: bool = False,
) -> list[float | None]:
    """How much the judge prefers ``first`` over ``second`` as the next reply, per prefix.

    The judge picks A or B (small judges cannot be trusted with scores: the 0.5B built-in gave
    every pair the same one). With ``refine.both_orders`` each pair is shown both ways round,
    so a judge that always picks one position ends in a tie, not a win: the result is the share
    of orders in which ``first`` won (0, 0.5 or 1). Otherwise the order alternates by index.
    Identical replies tie without asking; None means no answer could be read.
    """
    found = verdicts(
        judge,
        domain,
        prefixes,
        first,
        second,
        both_orders=both_orders,
        max_tokens=max_tokens,
        progress=progress,
    )
    shares: list[float | None] = []
    for (x, y), wins in zip(zip(first, second, strict=True), found, strict=True):
        if reply_text(x) == reply_text(y):
            shares.append(0.5)
        else:
            shares.append(sum(wins) / len(wins) if wins else None)
    return shares


_NEW_LINE = re.compile(r"^\W*NEW\s*:\s*(.+)$", re.I | re.M)
_EDIT_LINE = re.compile(r"^\W*EDIT\s*\[?(\d+)\]?\s*:\s*(.+)$", re.I | re.M)
_PLACEHOLDER = re.compile(r"<[^>]*>")


def _situation(text: str) -> str:
    """The "When ..." clause of a strategy, if it starts with one."""
    head, comma, _ = text.partition(",")
    return head.strip() if comma and head.lower().startswith("when ") else ""


def parse_strategies(text: str) -> dict[str, list[dict[str, Any]]] | None:
    """``{"new": [{situation, strategy}], "edit": [{id, strategy}]}`` from the writer, or None.

    The writer answers in lines, ``NEW: When <situation>, <what to do>.`` and
    ``EDIT <id>: <better strategy>`` (small models copy a JSON template's placeholders). Lines
    still holding a ``<placeholder>`` are dropped; None when no line is usable.
    """
    lines = [m.group(1).strip() for m in _NEW_LINE.finditer(text)]
    # "NEW: EDIT 3: ..." is an edit written on a NEW line, not a strategy starting "EDIT 3:"
    edits = [*_EDIT_LINE.finditer(text), *filter(None, map(_EDIT_LINE.match, lines))]
    new = [
        {"situation": _situation(line), "strategy": line}
        for line in lines
        if len(line) > 12 and not _PLACEHOLDER.search(line) and not _EDIT_LINE.match(line)
    ]
    edit = [
        {"id": int(m.group(1)), "strategy": m.group(2).strip()}
        for m in edits
        if len(m.group(2).strip()) > 12 and not _PLACEHOLDER.search(m.group(2))
    ]
    if not new and not edit:
        return None
    return {"new": new, "edit": edit}


def normalised(text: str) -> str:
    """A strategy's text for spotting the same advice written twice."""
    return " ".join(text.lower().split()).rstrip(".")


_ID_LIKE = re.compile(r"#\w*\d\w*|\b\d{4,}\b|\S+@\S+")
_NAME_LIKE = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+\b")


def too_specific(strategy: str, conversation: Sequence[Message], policy: str) -> bool:
    """Whether a strategy names this customer's details instead of giving general advice.

    It does when it holds something id-like (an order number, a long number, an email) or a
    capitalised name the customer used that the policy never mentions ("When Olivia Lopez lost
    her tablet, ..."): advice tied to one customer cannot transfer to the next.
    """
    if _ID_LIKE.search(strategy):
        return True
    said = " ".join(str(m.get("content") or "") for m in conversation if m["role"] == "user")
    known = set(re.findall(r"\b[A-Z][a-z]+\b", policy))
    names = {w for w in _NAME_LIKE.findall(strategy.strip()) if w not in known}
    return any(re.search(rf"\b{re.escape(w)}\b", said) for w in names)
