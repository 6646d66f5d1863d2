"""The rules of Socratic co-evolution as pure functions: prompts, verdicts, pairs, zones, utility.

Kept apart from the graph so each rule is tested on its own and reads as the paper states it.
"""

from __future__ import annotations

import json
import math
import random
import re
from itertools import product
from pathlib import Path
from typing import Any, Literal

import yaml

from agents.eval.answers import answers_match, extract_answer, normalise_text
from agents.models.base import ChatRequest

ZONES = ("mastered", "learning", "too_hard")
Zone = Literal["mastered", "learning", "too_hard"]


#: Prompts of every role, from ``prompts.yaml`` beside this module.
PROMPTS: dict[str, str] = yaml.safe_load(Path(__file__).with_name("prompts.yaml").read_text())


def solver_messages(question: str) -> list[dict[str, str]]:
    """The Solver's prompt for a question (also the prompt of its preference pairs)."""
    return [
        {"role": "system", "content": PROMPTS["solver_system"]},
        {"role": "user", "content": question},
    ]


def generator_messages(question: str, solution: str, zone: str) -> list[dict[str, str]]:
    """The Generator's prompt: the question, the solution the Teacher saw, and its zone."""
    user = PROMPTS["generator_user"].format(zone=zone, question=question, solution=solution)
    return [
        {"role": "system", "content": PROMPTS["generator_system"]},
        {"role": "user", "content": user},
    ]


def chat_request(system: str, user: str, **sampling: Any) -> ChatRequest:
    """A two-message request: a system prompt from :data:`PROMPTS` (by key) and a user turn."""
    messages = [{"role": "system", "content": PROMPTS[system]}, {"role": "user", "content": user}]
    return ChatRequest(messages=messages, **sampling)


def zone_of(success: float | None) -> Zone:
    """Zone of a question from the Solver's success rate (None: nothing verifiable)."""
    if success is None or success <= 0:
        return "too_hard"
    return "mastered" if success >= 1 else "learning"


def utility(success: float, center: float = 0.5, sigma: float = 0.2) -> float:
    """Gaussian utility of a new problem: highest when the Solver succeeds half the time."""
    return math.exp(-((success - center) ** 2) / (2 * sigma**2))


def build_pairs(
    correct: list[str], incorrect: list[str], reference: str | None, limit: int
) -> list[tuple[str, str, str]]:
    """(chosen, rejected, kind) pairs of one question.

    All (correct, incorrect) combinations, in order, up to ``limit``; when no sample is correct
    the reference solution is the winner against each incorrect one.
    """
    if correct:
        combos = product(correct, incorrect)
        return [(c, i, "sampled") for c, i in combos][:limit]
    if reference:
        return [(reference, i, "reference") for i in incorrect][:limit]
    return []


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in a model reply, tolerating code fences, text after the object and
    LaTeX backslashes."""
    start = text.find("{")
    if start < 0:
        return None
    tail = text[start:]
    # LaTeX in JSON strings: a raw "\boxed" would decode as a backspace and "oxed", a raw
    # "\underline" as a broken \u escape. Double every lone backslash that does not start \",
    # \n, \/ or a real \uXXXX escape (escaped pairs stay as they are); the untouched text is
    # only the fallback.
    fixed = re.sub(r'(\\\\)|\\(?!["/n]|u[0-9a-fA-F]{4})', lambda m: m.group(1) or "\\\\", tail)
    decoder = json.JSONDecoder()
    for candidate in (fixed, tail):
        try:
            value, _ = decoder.raw_decode(candidate)  # stops at the object's end
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def parse_judge(text: str) -> tuple[bool, str] | None:
    """(correct, analysis) from a judge reply, or None when it is malformed."""
    data = parse_json_object(text)
    if data is None or "correct" not in data:
        return None
    value = data["correct"]
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        value = value.strip().lower() == "true"
    if not isinstance(value, bool):
        return None
    return value, str(data.get("analysis") or "")


def parse_problem(text: str) -> dict[str, str] | None:
    """{question, solution, answer} from a Teacher refinement, or None when malformed."""
    data = parse_json_object(text)
    if data is None:
        return None
    question = data.get("question") or data.get("enhanced_question")
    solution = str(data.get("solution") or "")
    answer = data.get("answer")
    if answer in (None, "") and solution:
        answer = extract_answer(solution)
    if not isinstance(question, str) or not question.strip() or answer in (None, ""):
        return None
    return {"question": question.strip(), "solution": solution.strip(), "answer": str(answer)}


def qc_reason(
    question: str, texts: list[str], claimed: str | None, min_chars: int, known: set[str]
) -> str | None:
    """Why quality control drops a new problem given the Teacher's re-solutions ``texts``, or
    None when it is kept: ``malformed`` (too short), ``duplicate`` (its normalised text is in
    ``known``), ``ambiguous`` (the Teacher says so) or ``irreproducible`` (a re-solution has no
    answer, or one that differs from the ``claimed`` answer)."""
    answers = [extract_answer(t) for t in texts]
    if len(question) < min_chars:
        return "malformed"
    if normalise_text(question) in known:
        return "duplicate"
    if any("AMBIGUOUS" in t for t in texts):
        return "ambiguous"
    if any(a is None for a in answers) or not all(answers_match(a, claimed or "") for a in answers):  # type: ignore[arg-type]
        return "irreproducible"
    return None


def pick_batch(
    fresh: list[int], older: list[int], size: int, replay: float, rng: random.Random
) -> tuple[list[int], list[int]]:
    """This round's (fresh, replayed) item ids: fresh first, with ``replay`` of the batch old.

    When either side is short the other fills the batch, so a round is never smaller than it
    has to be.
    """
    want_old = min(len(older), round(size * replay)) if fresh else min(len(older), size)
    take_fresh = fresh[: size - want_old]
    take_old = rng.sample(older, min(len(older), size - len(take_fresh)))
    return take_fresh, take_old
