"""Built-in Teachers compared on Socratic refinement: can each write usable new problems on CPU?

For every Teacher, the same seed problems (drawn like a Socratic run's seeds) go through the
scheme's own prompts: half as *mastered* (shown a correct solution: "write a harder variant"),
half as *learning* (shown a wrong one: "write a problem aimed at this error"). Measured per
Teacher: the share of replies that parse as a {question, solution, answer} problem (valid JSON
rate), the share of those that pass quality control (the Teacher re-solves the new problem at
T 0.1 and must reproduce its own answer; too short, ambiguous and duplicate problems fail as in
the run), the new problems per seed (how fast a curriculum could grow per round), and seconds
per call. Rates come with 95% Wilson intervals; the last line is each Teacher's seconds per call
as a ratio of the first Teacher's, measured in the same run.

    python bench/teacher_refinement.py
    python bench/teacher_refinement.py --problems 16 --teachers builtin:qwen2.5-coder-0.5b
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: find agents/

TEACHERS = ["builtin:qwen2.5-coder-0.5b", "builtin:qwen2.5-coder-1.5b"]
FAMILIES = [
    {"name": "gsm_symbolic"},
    {"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "max_digits": 1}},
]


def wilson(hits: int, total: int) -> str:
    from scipy import stats

    if total == 0:
        return "—"
    ci = stats.binomtest(hits, total).proportion_ci(method="wilson")
    return f"{hits / total:.2f} ({ci.low:.2f}–{ci.high:.2f})"


def seed_inputs(count: int, seed: int) -> list[tuple[Any, str, str]]:
    """(task, solution shown, zone): mastered get the reference, learning an off-by-one answer."""
    from agents.task_families import FamilySpec, load_pools
    from agents.tasks import boxed_solution

    specs = [FamilySpec(f["name"], f.get("config", {})) for f in FAMILIES]
    tasks = load_pools(specs, train=count, seed=seed).train
    inputs = []
    for i, task in enumerate(tasks):
        right = boxed_solution(task) or f"The answer is \\boxed{{{task.answer}}}."
        if i % 2 == 0:
            inputs.append((task, right, "mastered"))
        else:
            try:
                wrong = str(float(task.answer) + 1).removesuffix(".0")
            except ValueError:
                wrong = "0"
            inputs.append(
                (
                    task,
                    f"I think the result is {wrong}. The answer is \\boxed{{{wrong}}}.",
                    "learning",
                )
            )
    return inputs


def measure(spec: str, inputs: list[tuple[Any, str, str]], args: argparse.Namespace) -> dict:
    from agents.eval.answers import normalise_text
    from agents.models import load_engine
    from agents.schemes.socratic.rules import PROMPTS, chat_request, parse_problem, qc_reason

    began = time.perf_counter()
    engine = load_engine(spec)
    load_seconds = time.perf_counter() - began
    requests = [
        chat_request(
            "refine_system",
            PROMPTS[f"refine_{zone}"].format(
                question=task.question, answer=task.answer, solution=shown
            ),
            temperature=0.7,
            max_tokens=args.max_tokens,
            seed=args.seed,
        )
        for task, shown, zone in inputs
    ]
    began = time.perf_counter()
    replies = engine.generate(requests, progress=True)
    refine_seconds = time.perf_counter() - began
    problems = [parse_problem(r.texts[0]) for r in replies]
    valid = [(p, task) for p, (task, _, _) in zip(problems, inputs, strict=True) if p]
    qc_requests = [
        chat_request(
            "qc_system", p["question"], temperature=0.1, max_tokens=args.max_tokens, seed=args.seed
        )
        for p, _ in valid
    ]
    began = time.perf_counter()
    checks = engine.generate(qc_requests, progress=True) if qc_requests else []
    qc_seconds = time.perf_counter() - began
    known = {normalise_text(task.question) for task, _, _ in inputs}
    reasons = [
        qc_reason(p["question"], c.texts, p["answer"], 30, known)
        for (p, _), c in zip(valid, checks, strict=True)
    ]
    passed = sum(r is None for r in reasons)
    tokens = sum(len(t) for r in [*replies, *checks] for t in r.texts)  # characters, for scale
    calls = len(requests) + len(qc_requests)
    return {
        "teacher": spec,
        "seeds": len(inputs),
        "valid": len(valid),
        "qc_passed": passed,
        "drop_reasons": {r: reasons.count(r) for r in set(reasons) if r},
        "load_seconds": round(load_seconds, 1),
        "seconds_per_call": (refine_seconds + qc_seconds) / max(calls, 1),
        "refine_seconds": round(refine_seconds, 1),
        "qc_seconds": round(qc_seconds, 1),
        "characters": tokens,
        "examples": [p for p, _ in valid[:3]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", nargs="+", default=TEACHERS)
    parser.add_argument("--problems", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args()
    inputs = seed_inputs(args.problems, args.seed)
    results = []
    for spec in args.teachers:
        results.append(measure(spec, inputs, args))
        r = results[-1]
        print(
            f"{spec}: valid {wilson(r['valid'], r['seeds'])}, QC pass of valid "
            f"{wilson(r['qc_passed'], r['valid'])}, new problems per seed "
            f"{wilson(r['qc_passed'], r['seeds'])}, {r['seconds_per_call']:.1f} s/call "
            f"(load {r['load_seconds']} s), drops {r['drop_reasons']}",
            flush=True,
        )
    base = results[0]["seconds_per_call"]
    print(
        "seconds per call vs "
        + results[0]["teacher"]
        + ": "
        + ", ".join(f"{r['teacher']} {r['seconds_per_call'] / base:.2f}x" for r in results)
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
