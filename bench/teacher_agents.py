"""Built-in teachers compared as agents on tasks that need tools: which one should teach?

Every teacher runs the same tool-needing tasks (multi-digit products, prime counts, bitwise
arithmetic, base conversion, calendar days; drawn from reasoning-gym like a run's held-out pool)
in the agent loop of the chosen mode, with the scheme's own prompts and worked examples.
Measured per teacher: accuracy (checked by the dataset's own scorer) with its 95% Wilson
interval, the share of episodes with a parse error, the share that ran Python at least once,
mean steps, and seconds per episode; the last line gives each teacher's seconds per episode as a
ratio of the first teacher's, measured in the same run.

    python bench/teacher_agents.py                          # code mode, both built-ins
    python bench/teacher_agents.py --mode tools --tasks 12 --teachers builtin:qwen2.5-coder-0.5b
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: find agents/

TEACHERS = ["builtin:qwen2.5-coder-0.5b", "builtin:qwen2.5-coder-1.5b"]
FAMILIES = [
    {
        "name": "products",
        "config": {"min_terms": 2, "max_terms": 2, "min_digits": 3, "max_digits": 5},
    },
    {"name": "count_primes", "config": {}},
    {"name": "bitwise_arithmetic", "config": {"difficulty": 1}},
    {"name": "base_conversion", "config": {}},
    {"name": "calendar_arithmetic", "config": {}},
]


def wilson(hits: int, total: int) -> str:
    from scipy import stats

    if total == 0:
        return "—"
    ci = stats.binomtest(hits, total).proportion_ci(method="wilson")
    return f"{hits / total:.2f} ({ci.low:.2f}–{ci.high:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teachers", nargs="+", default=TEACHERS)
    parser.add_argument("--tasks", type=int, default=20, help="tasks, split over the families")
    parser.add_argument("--mode", choices=("code", "tools"), default="code")
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from agents.episodes.agent_loop import LoopSettings, run_agent
    from agents.episodes.code_agent import run_code_agent
    from agents.models import load_engine
    from agents.task_families import FamilySpec, load_pools, score_text

    specs = [FamilySpec(f["name"], f.get("config", {})) for f in FAMILIES]
    tasks = load_pools(specs, train=0, heldout=args.tasks, seed=args.seed).heldout
    settings = LoopSettings(max_steps=args.max_steps, max_tokens=256, seed=args.seed)
    runner = run_code_agent if args.mode == "code" else run_agent
    seconds: dict[str, float] = {}
    print(f"{len(tasks)} tasks ({', '.join(s.name for s in specs)}), {args.mode} mode")
    print("teacher | accuracy (95% CI) | parse errors | ran python | mean steps | s/episode")
    for spec in args.teachers:
        engine = load_engine(spec)
        start = time.perf_counter()
        episodes = runner(engine, [t.question for t in tasks], settings=settings, progress=True)
        seconds[spec] = (time.perf_counter() - start) / len(tasks)
        hits = sum(
            bool(score_text(e.answer or "", t.answer, t.check))
            for e, t in zip(episodes, tasks, strict=True)
        )
        parse = sum(e.parse_errors > 0 for e in episodes)
        python = sum(e.tool_uses.get("python_exec", 0) > 0 for e in episodes)
        steps = sum(e.steps for e in episodes) / len(episodes)
        print(
            f"{spec} | {wilson(hits, len(tasks))} | {wilson(parse, len(tasks))} | "
            f"{wilson(python, len(tasks))} | {steps:.2f} | {seconds[spec]:.1f}"
        )
        per_family = {}
        for e, t in zip(episodes, tasks, strict=True):
            right = bool(score_text(e.answer or "", t.answer, t.check))
            per_family.setdefault(t.source, []).append(right)
        print("  per family: " + ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in per_family.items()))
        del engine
    first = args.teachers[0]
    ratios = ", ".join(f"{t}: {seconds[t] / seconds[first]:.2f}x" for t in args.teachers)
    print(f"seconds per episode as a ratio of {first} (same run): {ratios}")


if __name__ == "__main__":
    main()
