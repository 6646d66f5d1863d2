"""A scripted world for Socratic orchestration tests: roles answer by rule, not by model.

Questions look like ``"What is 7 + 5? [m]"``; the tag decides how the scripted Solver does:
``[m]`` always right (mastered), ``[l]`` right on even samples (learning), ``[h]`` always
wrong (too hard), ``[u]`` no number at all (the rule cannot decide, so the Teacher judges),
``[sK]`` right on samples ``j`` with ``j % 4 < K`` (a success rate of K/4 when the number of
samples is a multiple of 4).

Markers after ``#`` in a question steer the scripted Teacher:

* ``#judge-bad``: every judge reply on it is malformed; ``#judge-yes``: the judge says correct.
* ``#json``: its refinement is not JSON; ``#latex``: JSON with raw LaTeX backslashes and no
  ``answer`` key, as models write it.
* ``#short``: the new problem is too short; ``#amb``: it has no numbers to add (QC: AMBIGUOUS);
  ``#irr``: the Teacher claims a wrong answer (QC disagrees); ``#dup``: it repeats its parent.
* ``#sK``: the new problem is tagged ``[sK]`` instead of ``[l]``.

Otherwise the Teacher writes a new ``[l]`` problem, re-solves problems correctly, and judges
"incorrect".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from scripted_engine import ScriptedEngine

from agents.models.base import ChatRequest, ChatResult, Completion
from agents.schemes.socratic.rules import PROMPTS

_SUM = re.compile(r"What is (\d+) \+ (\d+)\?")
_RATE = re.compile(r"\[s(\d)\]")
_NEW_RATE = re.compile(r"#s(\d)")
_PARENT = re.compile(r"Original problem:\n(.+)")


def true_answer(question: str) -> int | None:
    match = _SUM.search(question)
    return int(match.group(1)) + int(match.group(2)) if match else None


def prompt_kind(system: str) -> str:
    """What a request asks for, from its system prompt."""
    kinds = {
        PROMPTS["solver_system"]: "solve",
        PROMPTS["judge_system"]: "judge",
        PROMPTS["refine_system"]: "refine",
        PROMPTS["qc_system"]: "qc",
        PROMPTS["generator_system"]: "generate",
    }
    if system not in kinds:
        raise AssertionError(f"unexpected prompt: {system[:60]}")
    return kinds[system]


class ScriptedRole(ScriptedEngine):
    """Teacher, Solver or Generator by rule; records what it was asked.

    Args:
        role: The role's name (part of the spec).
        judge_malformed_first: Judge replies with an even seed are malformed (a retry fixes it).
        crash_on: Request kinds (``solve``, ``judge``, ``refine``, ``qc``, ``generate``) that
            raise ``crash_with`` the first time they are asked, as a process dying mid-stage.
        crash_with: What a crash raises (``KeyboardInterrupt`` for a Ctrl-C).
    """

    def __init__(
        self,
        role: str,
        *,
        judge_malformed_first: bool = False,
        crash_on: set[str] | None = None,
        crash_with: type[BaseException] = RuntimeError,
    ) -> None:
        super().__init__(role)
        self.judge_malformed_first = judge_malformed_first
        self.crash_on = set(crash_on or ())
        self.crash_with = crash_with

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        results = []
        for request in requests:
            system = request.messages[0]["content"]
            user = request.messages[-1]["content"]
            kind = prompt_kind(system)
            if kind in self.crash_on:
                self.crash_on.discard(kind)
                raise self.crash_with(f"scripted {self.role} crashed on {kind}")
            self.requests.append((kind, request))
            texts = [self._answer(kind, user, request, j) for j in range(request.n)]
            results.append(
                ChatResult(
                    completions=[Completion(text=t, finish_reason="stop") for t in texts],
                    prompt_tokens=10 * request.n,
                    completion_tokens=20 * request.n,
                    model=self.spec,
                )
            )
        return results

    def _answer(self, kind: str, user: str, request: ChatRequest, j: int) -> str:
        self.asked[kind] += 1
        if kind == "solve":
            right = true_answer(user)
            if "[u]" in user:
                return "I am not sure."
            rate = _RATE.search(user)
            ok = (
                "[m]" in user
                or ("[l]" in user and j % 2 == 0)
                or (rate is not None and j % 4 < int(rate.group(1)))
            )
            value = right if ok else (right or 0) + 1
            return f"Adding gives {value}. The answer is \\boxed{{{value}}}."
        if kind == "judge":
            if "#judge-bad" in user:
                return "I think it is wrong"
            if self.judge_malformed_first and (request.seed or 0) % 2 == 0:
                return "I think it is wrong"
            correct = "#judge-yes" in user
            return json.dumps({"correct": correct, "analysis": "no final answer"})
        if kind == "refine":
            return self._refine(user)
        if kind == "qc":
            right = true_answer(user)
            return f"The answer is \\boxed{{{right}}}." if right is not None else "AMBIGUOUS"
        a, b = (int(x) for x in _SUM.findall(user)[0])
        return f"What is {a + 20} + {b + 2}? Count the apples in each basket. [l]"

    def _refine(self, user: str) -> str:
        parent = _PARENT.search(user).group(1)  # type: ignore[union-attr]
        a, b = (int(x) for x in _SUM.search(parent).groups())  # type: ignore[union-attr]
        rate = _NEW_RATE.search(parent)
        tag = f"[s{rate.group(1)}]" if rate else "[l]"
        question = f"What is {a + 10} + {b + 1}? A shop counts items twice. {tag}"
        answer = a + b + 11
        if "#json" in parent:
            return "not json at all"
        if "#latex" in parent:
            # Raw backslashes inside a JSON string, and the answer left to the solution.
            solution = f"{a + 10} plus {b + 1} is {answer}, so the answer is \\boxed{{{answer}}}."
            return f'{{"question": "{question}", "solution": "{solution}"}}'
        if "#short" in parent:
            question = f"What is {a} + 1? [l]"
            answer = a + 1
        elif "#amb" in parent:
            question = f"A shop sells {a} apples and then some more. How many does it have? [l]"
        elif "#dup" in parent:
            question = parent
            answer = a + b
        elif "#irr" in parent:
            answer += 1
        return json.dumps(
            {
                "question": question,
                "solution": f"The answer is \\boxed{{{answer}}}.",
                "answer": str(answer),
            }
        )


def write_seeds(path: Path, tags: list[str], start: int = 0) -> Path:
    """Seed rows ``What is (i + 2) + (i + 3)? TAG`` for i from ``start``, with solutions."""
    rows = []
    for i, tag in enumerate(tags, start=start):
        a, b = i + 2, i + 3
        solution = f"{a} plus {b} is {a + b}. The answer is \\boxed{{{a + b}}}."
        rows.append(
            {"question": f"What is {a} + {b}? {tag}", "answer": str(a + b), "solution": solution}
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
