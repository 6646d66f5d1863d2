"""Ranking metrics of one feed against a goal, and the recommenders without an agent.

Recall@K (the hidden target is in the top K; one target, so it is the hit rate), NDCG@K
(1 / log2(rank + 1) for the target's rank within K, else 0) and CSR@K (the share of the top K
meeting every hard constraint in force). The baselines rank the same catalog for the same goals:
popularity, the collaborative score of the user's history, and embedding retrieval on the raw
text of the user's commands (no parser, no planner).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tools.catalog.index import Catalog, HardConstraint


@dataclass(frozen=True)
class FeedScore:
    """How good one feed is for one goal at one turn."""

    recall: float
    ndcg: float
    csr: float

    @classmethod
    def of(
        cls,
        feed: Sequence[str],
        target: str,
        constraints: Sequence[HardConstraint],
        catalog: Catalog,
        k: int,
    ) -> FeedScore:
        top = list(feed[:k])
        rank = top.index(target) + 1 if target in top else None
        ndcg = 1.0 / math.log2(rank + 1) if rank else 0.0
        if top:
            meets = [all(c.holds(catalog.by_id[i]) for c in constraints) for i in top]
            csr = sum(meets) / len(top)
        else:
            csr = 0.0
        return cls(recall=1.0 if rank else 0.0, ndcg=ndcg, csr=csr)


def _top(scores: np.ndarray, catalog: Catalog, exclude: Sequence[str], k: int) -> list[str]:
    seen = set(exclude)
    order = np.argsort(-scores, kind="stable")
    feed = []
    for n in order:
        item = catalog.ids[int(n)]
        if item not in seen:
            feed.append(item)
            if len(feed) == k:
                break
    return feed


def popularity_feed(catalog: Catalog, history: Sequence[str], k: int) -> list[str]:
    """The most rated films the user has not rated; commands are ignored."""
    return _top(catalog.collaborative.popular(), catalog, history, k)


def collaborative_feed(catalog: Catalog, history: Sequence[str], k: int) -> list[str]:
    """The collaborative ranking of the user's history; commands are ignored."""
    return _top(catalog.collaborative.scores(list(history)), catalog, history, k)


def retrieval_feed(
    catalog: Catalog, history: Sequence[str], commands: Sequence[str], k: int
) -> list[str]:
    """Films nearest to the embedded text of every command so far (no agent)."""
    text = " ".join(commands).strip()
    if not text:
        return popularity_feed(catalog, history, k)
    return _top(catalog.similarity(text), catalog, history, k)
