"""A scripted world for Socratic orchestration tests: roles answer by rule, not by model.

Questions look like ``"What is 7 + 5? [m]"``; the tag decides how the scripted Solver does:
``[m]`` always right (mastered), ``[l]`` right on even samples (learning), ``[h]`` always
wrong (too hard), ``[u]`` no number at all (the rule cannot decide, so the Teacher judges).
The scripted Teacher writes new ``[l]`` problems, re-solves them correctly, and judges.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from agents.models.base import ChatRequest, ChatResult, Completion, Engine
from agents.schemes.socratic import PROMPTS

_SUM = re.compile(r"What is (\d+) \+ (\d+)\?")


def true_answer(question: str) -> int | None:
    match = _SUM.search(question)
    return int(match.group(1)) + int(match.group(2)) if match else None


class ScriptedRole(Engine):
    """Teacher, Solver or Generator by rule; counts what it was asked."""

    def __init__(self, role: str, *, judge_malformed_first: bool = False) -> None:
        self.spec = f"scripted:{role}"
        self.role = role
        self.adapter: str | None = None
        self.asked: Counter[str] = Counter()
        self.judge_malformed_first = judge_malformed_first

    @property
    def fingerprint(self) -> str:
        return f"{self.spec}+{self.adapter}"

    def set_adapter(self, path: object) -> None:
        self.adapter = None if path is None else str(path)

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        results = []
        for request in requests:
            system = request.messages[0]["content"]
            user = request.messages[-1]["content"]
            texts = [self._answer(system, user, request, j) for j in range(request.n)]
            results.append(
                ChatResult(
                    completions=[Completion(text=t, finish_reason="stop") for t in texts],
                    prompt_tokens=10 * request.n,
                    completion_tokens=20 * request.n,
                    model=self.spec,
                )
            )
        return results

    def _answer(self, system: str, user: str, request: ChatRequest, j: int) -> str:
        if system == PROMPTS["solver_system"]:
            self.asked["solve"] += 1
            right = true_answer(user)
            if "[u]" in user:
                return "I am not sure."
            ok = "[m]" in user or ("[l]" in user and j % 2 == 0)
            value = right if ok else (right or 0) + 1
            return f"Adding gives {value}. The answer is \\boxed{{{value}}}."
        if system == PROMPTS["judge_system"]:
            self.asked["judge"] += 1
            if self.judge_malformed_first and (request.seed or 0) % 2 == 0:
                return "I think it is wrong"
            return json.dumps({"correct": False, "analysis": "no final answer"})
        if system == PROMPTS["refine_system"]:
            self.asked["refine"] += 1
            a, b = (int(x) for x in _SUM.search(user).groups())  # type: ignore[union-attr]
            question = f"What is {a + 10} + {b + 1}? A shop counts items twice. [l]"
            answer = a + b + 11
            if "zero" in user:
                return "not json at all"
            return json.dumps(
                {
                    "question": question,
                    "solution": f"The answer is \\boxed{{{answer}}}.",
                    "answer": str(answer),
                }
            )
        if system == PROMPTS["qc_system"]:
            self.asked["qc"] += 1
            right = true_answer(user)
            return f"The answer is \\boxed{{{right}}}." if right is not None else "AMBIGUOUS"
        if system == PROMPTS["generator_system"]:
            self.asked["generate"] += 1
            a, b = (int(x) for x in _SUM.findall(user)[0])
            return f"What is {a + 20} + {b + 2}? Count the apples in each basket. [l]"
        raise AssertionError(f"unexpected prompt: {system[:60]}")


def write_seeds(path: Path, tags: list[str]) -> Path:
    rows = [
        {
            "question": f"What is {i + 2} + {i + 3}? {tag}",
            "answer": str(2 * i + 5),
            "solution": f"{i + 2} plus {i + 3} is {2 * i + 5}. The answer is \\boxed{{{2 * i + 5}}}.",
        }
        for i, tag in enumerate(tags)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
