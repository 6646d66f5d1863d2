"""The planner's four recommendation tools, after RecBot: Filter, Matcher, Attenuator, Aggregator.

Each is a ``@tool`` function that works on the episode's :class:`Feed` (found in its
``ToolContext``): ``filter_items`` narrows the candidates by hard constraints, ``match_items``
adds a positive soft preference (α · semantic similarity + (1 − α) · collaborative score from the
user's history), ``attenuate_items`` subtracts a negative one (β · similarity), and
``aggregate_feed`` sums what was added, ranks the candidates and shows the top K. The planner
model picks the chain; from Python the same functions run directly::

    feed = Feed(catalog, history=["50", "181"])
    with ToolContext([feed]) as context:
        filter_items([{"attribute": "year", "operator": ">=", "value": 1990}], context=context)
        match_items("tense crime thriller", context=context)
        print(aggregate_feed(10, context=context))

The films the user has rated never enter the feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from tools.base import Tool, ToolContext, ToolError, tool
from tools.catalog.index import Catalog, HardConstraint

MAX_K = 50


@dataclass
class Score:
    """One added preference: its kind, text, weight and the scores it gives every item."""

    kind: str  # "match" or "attenuate"
    text: str
    weight: float
    values: np.ndarray


@dataclass
class Feed:
    """The state one recommendation episode's tools share.

    Attributes:
        catalog: The opened catalog.
        history: Ids of the items the user has rated; they are never recommended, and they are
            what the collaborative score is computed from.
        candidates: Ids left by the last filter (None: every item).
        constraints: The hard constraints of the last filter.
        scores: The preferences added since the last aggregation.
        shown: The feed the last aggregation produced, best first.
    """

    catalog: Catalog
    history: Sequence[str] = ()
    candidates: list[str] | None = None
    constraints: list[HardConstraint] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    _collaborative: np.ndarray | None = field(default=None, repr=False)

    def collaborative(self) -> np.ndarray:
        """The user's collaborative score of every item, in [0, 1] (computed once)."""
        if self._collaborative is None:
            self._collaborative = self.catalog.collaborative.scores(list(self.history))
        return self._collaborative

    def reset(self) -> None:
        """Forget candidates and scores (a new command rebuilds the feed from scratch)."""
        self.candidates = None
        self.constraints = []
        self.scores = []

    def rank(self, k: int) -> list[str]:
        """The top ``k`` candidates by the summed scores (the collaborative score alone when
        nothing was added), the user's history left out."""
        catalog = self.catalog
        pool = catalog.ids if self.candidates is None else self.candidates
        seen = set(self.history)
        pool = [i for i in pool if i not in seen]
        total = np.zeros(len(catalog.ids))
        for score in self.scores:
            total += score.values
        if not self.scores:
            total = self.collaborative().copy()
        index = np.array([catalog.position[i] for i in pool], dtype=int)
        if not len(index):
            return []
        # stable: ties keep catalog order
        order = np.argsort(-total[index], kind="stable")[:k]
        return [pool[n] for n in order]


def _feed(context: ToolContext) -> Feed:
    return context.require(Feed)


def _constraints(raw: Sequence[Any]) -> list[HardConstraint]:
    parsed = []
    for n, entry in enumerate(raw, 1):
        try:
            parsed.append(HardConstraint.model_validate(entry))
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"]) or "constraint"
            raise ToolError(f"constraint {n}: {where}: {problem['msg']}") from None
    return parsed


def _preview(feed: Feed, ids: Sequence[str], count: int = 3) -> str:
    return "; ".join(feed.catalog.by_id[i].line() for i in ids[:count])


@tool
def filter_items(constraints: list[dict[str, Any]], *, context: ToolContext) -> str:
    """Keep only the films that meet every hard constraint (exact, checked in the catalog).

    Args:
        constraints: Objects {"attribute", "operator", "value"}; attribute is year, runtime
            (minutes), genre, language, country, director or cast; operator is ==, !=, <, <=,
            >, >= for year and runtime, == or != for the others.
    """
    feed = _feed(context)
    parsed = _constraints(constraints)
    feed.candidates = feed.catalog.filter(parsed)
    feed.constraints = parsed
    left = [i for i in feed.candidates if i not in set(feed.history)]
    rule = " and ".join(str(c) for c in parsed) or "no constraint"
    if not left:
        return f"No film meets {rule}."
    return f"{len(left)} films meet {rule}, e.g. {_preview(feed, left)}."


def _add(kind: str, text: str, weight: float, context: ToolContext, alpha: float = 1.0) -> Feed:
    feed = _feed(context)
    if not text.strip():
        raise ToolError("the preference text is empty")
    if not 0.0 <= alpha <= 1.0:
        raise ToolError(f"alpha must be between 0 and 1, not {alpha}")
    if weight < 0:
        raise ToolError(f"the weight must not be negative, not {weight}")
    similarity = feed.catalog.similarity(text)
    values = alpha * similarity + (1 - alpha) * feed.collaborative()
    feed.scores.append(Score(kind, text, weight, weight * values * (1 if kind == "match" else -1)))
    return feed


@tool
def match_items(preference: str, alpha: float = 0.7, *, context: ToolContext) -> str:
    """Favour films matching a positive soft preference (mood, style, "like Heat").

    Args:
        preference: What the user wants, in words.
        alpha: Weight of the semantic match against the collaborative score of the user's
            history (1: only the words, 0: only the history).
    """
    feed = _add("match", preference, 1.0, context, alpha)
    return f"Added the preference {preference!r} (alpha {alpha:g}); {len(feed.scores)} so far."


@tool
def attenuate_items(preference: str, beta: float = 0.5, *, context: ToolContext) -> str:
    """Push down films matching something the user does not want (a negative soft preference).

    Args:
        preference: What the user wants less of, in words.
        beta: Strength of the penalty on the semantic similarity.
    """
    feed = _add("attenuate", preference, beta, context)
    return f"Penalised {preference!r} (beta {beta:g}); {len(feed.scores)} preferences so far."


@tool
def aggregate_feed(k: int = 10, *, context: ToolContext) -> str:
    """Rank the remaining films by the added preferences and show the new feed.

    Args:
        k: How many films the feed shows.
    """
    feed = _feed(context)
    if not 1 <= k <= MAX_K:
        raise ToolError(f"k must be between 1 and {MAX_K}, not {k}")
    feed.shown = feed.rank(k)
    if not feed.shown:
        return "The feed is empty: no film meets the constraints."
    lines = [f"{n}. {feed.catalog.by_id[i].line()}" for n, i in enumerate(feed.shown, 1)]
    return "New feed:\n" + "\n".join(lines)


PLANNER_TOOLS: list[Tool] = [filter_items, match_items, attenuate_items, aggregate_feed]
