"""The parser's output: what the user wants and does not want, kept across turns.

``Preferences`` is the JSON schema the Parser agent must produce (validated by pydantic): positive
and negative preferences, each split into *hard* constraints (an attribute, an operator and a
value, checked exactly by the catalog) and *soft* preferences (free text: mood, style, "like
Heat", matched semantically). A negative hard constraint names what the user rules out
(``genre == Horror`` under ``negative`` means no horror); :meth:`Preferences.filters` turns both
sides into the constraints the Filter tool applies.

:func:`reconcile` is the memory rule the parser's JSON goes through each turn: when the new
preferences contradict themselves, the cue that is new this turn wins ("no longer want …"), and
:func:`constraint_f1` scores a parse against the simulator's ground truth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.catalog.films import NUMBER_ATTRIBUTES
from tools.catalog.index import HardConstraint

NEGATION = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", "<=": ">", ">": "<="}


class Side(BaseModel):
    """One side (positive or negative) of the preferences."""

    model_config = ConfigDict(extra="forbid")

    hard: list[HardConstraint] = Field(default_factory=list)
    soft: list[str] = Field(default_factory=list)


class Preferences(BaseModel):
    """What the user wants (``positive``) and what they rule out (``negative``)."""

    model_config = ConfigDict(extra="forbid")

    positive: Side = Field(default_factory=Side)
    negative: Side = Field(default_factory=Side)

    def filters(self) -> list[HardConstraint]:
        """The hard constraints to filter by: the positive ones, and each negative one negated
        (``negative: year < 1980`` is ``year >= 1980``), without duplicates."""
        found: dict[tuple[str, str, str], HardConstraint] = {}
        for constraint in [*self.positive.hard, *(negate(c) for c in self.negative.hard)]:
            found.setdefault(key(constraint), constraint)
        return list(found.values())

    def is_empty(self) -> bool:
        return not (
            self.positive.hard or self.positive.soft or self.negative.hard or self.negative.soft
        )

    def summary(self) -> str:
        """One readable line: ``+ year >= 1990; genre == Crime; "tense" | - "horror"``."""

        def side(part: Side) -> str:
            items = [str(c) for c in part.hard] + [json.dumps(s) for s in part.soft]
            return "; ".join(items) or "nothing"

        return f"+ {side(self.positive)} | - {side(self.negative)}"


def negate(constraint: HardConstraint) -> HardConstraint:
    """The constraint an item meets exactly when it does not meet ``constraint`` (for an item
    whose attribute is known)."""
    return constraint.model_copy(update={"operator": NEGATION[constraint.operator]})


def key(constraint: HardConstraint) -> tuple[str, str, str]:
    """A comparable form: attribute, operator and the value (numbers as numbers, text folded)."""
    value = constraint.value
    if constraint.attribute in NUMBER_ATTRIBUTES:
        text = f"{float(value):g}"
    else:
        text = " ".join(str(value).lower().split())
    return constraint.attribute, constraint.operator, text


# -- parsing ------------------------------------------------------------------------------------

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


class ParseFailure(ValueError):
    """The parser's reply held no valid preferences JSON; the message says why."""


def parse_preferences(text: str) -> Preferences:
    """The preferences in a model's reply: a JSON object, bare or in a ```json fence.

    Raises:
        ParseFailure: No JSON object, invalid JSON, or JSON that breaks the schema (the first
            problem, with where it is).
    """
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        raise ParseFailure("the reply holds no JSON object")
    try:
        data = json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ParseFailure(f"invalid JSON: {exc.msg} at character {exc.pos}") from None
    try:
        return Preferences.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"]) or "preferences"
        raise ParseFailure(f"{where}: {problem['msg']}") from None


# -- memory -------------------------------------------------------------------------------------


def _interval(constraints: Iterable[HardConstraint]) -> tuple[float, float]:
    low, high = float("-inf"), float("inf")
    for c in constraints:
        v = float(c.value)
        if c.operator in (">", ">="):
            low = max(low, v + (1e-9 if c.operator == ">" else 0))
        elif c.operator in ("<", "<="):
            high = min(high, v - (1e-9 if c.operator == "<" else 0))
        elif c.operator == "==":
            low, high = max(low, v), min(high, v)
    return low, high


def _conflict(a: HardConstraint, b: HardConstraint) -> bool:
    """Whether two filter constraints can never hold together."""
    if a.attribute != b.attribute:
        return False
    if a.attribute in NUMBER_ATTRIBUTES:
        if "!=" in (a.operator, b.operator):
            equal, other = (a, b) if a.operator == "==" else (b, a)
            return (
                equal.operator == "==" and other.operator == "!=" and key(equal)[2] == key(other)[2]
            )
        low, high = _interval([a, b])
        return low > high
    same_value = key(a)[2] == key(b)[2]
    return same_value and a.operator != b.operator


def reconcile(previous: Preferences, parsed: Preferences) -> Preferences:
    """``parsed`` with its contradictions resolved by the latest cue.

    Two hard constraints that can never hold together (``genre == Horror`` and a negative
    ``genre == Horror``; ``year >= 1990`` and ``year < 1980``), or a soft phrase on both sides:
    the one that was not in ``previous`` is this turn's cue and stays; the other goes. When both
    are new (or both old), the later one in the parse stays.
    """
    old = {("+", key(c)) for c in previous.positive.hard} | {
        ("-", key(c)) for c in previous.negative.hard
    }
    entries = [("+", c) for c in parsed.positive.hard] + [("-", c) for c in parsed.negative.hard]
    keep = [True] * len(entries)
    as_filter = [c if sign == "+" else negate(c) for sign, c in entries]
    for j in range(len(entries)):
        for i in range(j):
            if keep[i] and keep[j] and _conflict(as_filter[i], as_filter[j]):
                new_i = (entries[i][0], key(entries[i][1])) not in old
                new_j = (entries[j][0], key(entries[j][1])) not in old
                loser = j if (new_i and not new_j) else i
                keep[loser] = False
    positive_hard = [c for (sign, c), k in zip(entries, keep, strict=True) if k and sign == "+"]
    negative_hard = [c for (sign, c), k in zip(entries, keep, strict=True) if k and sign == "-"]

    def fold(text: str) -> str:
        return " ".join(text.lower().split())

    before_pos = {fold(s) for s in previous.positive.soft}
    before_neg = {fold(s) for s in previous.negative.soft}
    pos, neg = list(dict.fromkeys(parsed.positive.soft)), list(dict.fromkeys(parsed.negative.soft))
    both = {fold(s) for s in pos} & {fold(s) for s in neg}
    for text in both:
        # the side it was not on before is where it moved this turn
        if text in before_pos and text not in before_neg:
            pos = [s for s in pos if fold(s) != text]
        else:
            neg = [s for s in neg if fold(s) != text]
    return Preferences(
        positive=Side(hard=positive_hard, soft=pos),
        negative=Side(hard=negative_hard, soft=neg),
    )


def constraint_f1(parsed: Sequence[HardConstraint], truth: Sequence[HardConstraint]) -> float:
    """F1 of the parsed filter constraints against the true ones (1.0 when both are empty)."""
    got, want = {key(c) for c in parsed}, {key(c) for c in truth}
    if not got and not want:
        return 1.0
    hits = len(got & want)
    if not hits:
        return 0.0
    precision, recall = hits / len(got), hits / len(want)
    return 2 * precision * recall / (precision + recall)


def schema_text() -> str:
    """The preferences JSON schema, compact, for the parser's prompt."""
    return json.dumps(Preferences.model_json_schema(), separators=(",", ":"))


def empty() -> dict[str, Any]:
    return Preferences().model_dump()
