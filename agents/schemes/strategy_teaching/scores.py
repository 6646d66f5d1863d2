"""Held-out scores of strategy teaching, each with its 95% interval (:mod:`agents.eval.stats`).

* Full dialogues, per agent: τ² task success (every gold write action made, no other write),
  gold-action recall and the share of dialogues with a policy violation, over the held-out
  tasks; and for every agent but the student alone, the paired difference from the student
  alone on the same tasks (McNemar's exact test for success and violations, a sign-flip
  permutation test for recall).
* Judged next replies, per comparison: the win rate of A over B (a win 1, a tie or a split
  verdict over the two orders 0.5), its bootstrap interval over scenarios, and a sign test on
  the scenarios the judge decided (wins against losses).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agents.eval.stats import accuracy_estimate, compare

#: Per-dialogue outcomes with an interval: metric key → the per-task value it averages.
MEASURES = ("success", "action_recall", "dialogues_with_violations")
#: The agent every other is compared with, task by task.
REFERENCE = "student"


def _interval(values: Sequence[float], samples: int = 1) -> dict[str, Any]:
    estimate = accuracy_estimate(values, samples)
    return {
        "value": round(estimate.value, 3),
        "ci": [round(estimate.low, 3), round(estimate.high, 3)],
    }


def dialogue_scores(outcomes: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, Any]:
    """Per agent, the held-out dialogue measures with intervals and paired tests.

    Args:
        outcomes: agent → task id → ``{"success": 0/1, "action_recall": 0..1,
            "dialogues_with_violations": 0/1, "violations": count}``.

    Returns:
        agent → ``{"success": x, "success_ci": [lo, hi], ..., "violations": mean count, "n":
        tasks, "vs_student": {measure: {"difference", "ci", "p_value", "test", "better",
        "worse"}}}`` (no ``vs_student`` for the student alone, or without it).
    """
    scores: dict[str, Any] = {}
    reference = outcomes.get(REFERENCE)
    for agent, per_task in outcomes.items():
        if not per_task:
            continue
        found: dict[str, Any] = {"n": len(per_task)}
        for measure in MEASURES:
            interval = _interval([t[measure] for t in per_task.values()])
            found[measure], found[f"{measure}_ci"] = interval["value"], interval["ci"]
        found["violations"] = round(
            sum(t["violations"] for t in per_task.values()) / len(per_task), 3
        )
        if reference and agent != REFERENCE:
            found["vs_student"] = {
                measure: _paired(
                    {k: v[measure] for k, v in reference.items()},
                    {k: v[measure] for k, v in per_task.items()},
                )
                for measure in MEASURES
            }
        scores[agent] = found
    return scores


def _paired(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, Any]:
    result = compare(before, after)
    return {
        "difference": round(result.difference, 3),
        "ci": [round(result.low, 3), round(result.high, 3)],
        "p_value": round(result.p_value, 4),
        "test": result.test,
        "better": result.better,
        "worse": result.worse,
    }


def win_rate(shares: Sequence[float | None], orders: int = 2) -> dict[str, Any]:
    """A judged comparison's win rate with its interval and a sign test against no preference.

    Args:
        shares: Per scenario, the share of orders in which A won (0, 0.5 or 1), None when the
            judge's answer could not be read.
        orders: Verdicts per scenario (2: each pair shown both ways round); when every
            scenario scores the same, the Wilson interval counts them.
    """
    from scipy import stats

    judged = [x for x in shares if x is not None]
    wins, losses = sum(x == 1.0 for x in judged), sum(x == 0.0 for x in judged)
    found: dict[str, Any] = {
        "win_rate": None,
        "ci": None,
        "p_value": None,
        "wins": wins,
        "ties": sum(0.0 < x < 1.0 for x in judged),
        "losses": losses,
        "unjudged": len(shares) - len(judged),
    }
    if judged:
        interval = _interval(judged, orders)
        found["win_rate"], found["ci"] = interval["value"], interval["ci"]
        decided = wins + losses
        found["p_value"] = (
            round(float(stats.binomtest(wins, decided, 0.5).pvalue), 4) if decided else 1.0
        )
    return found
