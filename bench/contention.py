"""Generation beside a CPU-bound process: how much throughput survives contention.

Each setting runs in a fresh Python process (OpenMP reads its environment once, at start): the
built-in SmolLM2-135M engine generates the same seeded batch (8 prompts x 2 samples, 48 new
tokens) alone, then again while another process spins on one core. Printed per setting: tokens/s
alone, tokens/s contended, and the contended throughput as a ratio of the same setting alone and
of the untuned default alone (the figure users feel).

Settings:

* ``untuned``: torch as it comes (``AGENTS_THREADS=untuned``);
* ``agents``: what ``agents`` does by itself (:mod:`agents.threads`);
* ``one-thread``: ``AGENTS_THREADS=1``, the remedy on a shared machine for now.

    python bench/contention.py
    python bench/contention.py --settings untuned agents --max-tokens 32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("untuned", "agents", "one-thread")
PROMPTS = [
    "What is 17 + 25?",
    "Name three rivers in Europe.",
    "What is 12 times 11?",
    "Write one sentence about the sea.",
    "What is half of 250?",
    "Who wrote Hamlet?",
    "What is 144 divided by 12?",
    "Give a synonym of quick.",
]

CHILD = r"""
import json, os, sys, time
setting, model = sys.argv[1], sys.argv[2]
max_tokens, contended = int(sys.argv[3]), sys.argv[4] == "1"
if setting == "untuned":
    os.environ["AGENTS_THREADS"] = "untuned"
if setting == "one-thread":
    os.environ["AGENTS_THREADS"] = "1"
import torch
from agents.models import load_engine
from agents.models.base import ChatRequest
engine = load_engine(model)
prompts = json.loads(sys.argv[5])
def requests(n):
    return [ChatRequest(messages=[{"role": "user", "content": p}], n=2, temperature=0.8,
            max_tokens=n, seed=i) for i, p in enumerate(prompts)]
engine.generate(requests(4))  # warm-up
burner = None
if contended:
    import subprocess
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(1.0)
began = time.perf_counter()
results = engine.generate(requests(max_tokens))
seconds = time.perf_counter() - began
if burner is not None:
    burner.kill()
tokens = sum(r.completion_tokens for r in results)
print(json.dumps({"tokens": tokens, "seconds": seconds, "threads": torch.get_num_threads()}))
"""


def measure(setting: str, model: str, max_tokens: int, contended: bool, timeout: float) -> dict:
    """One run in a fresh interpreter; ``timeout`` caps a collapsed run (reported as such)."""
    command = [
        sys.executable,
        "-c",
        CHILD,
        setting,
        model,
        str(max_tokens),
        "1" if contended else "0",
        json.dumps(PROMPTS),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("OMP_NUM_THREADS", None)  # each setting decides its own threads
    began = time.perf_counter()
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=True
        )
    except subprocess.TimeoutExpired:
        return {"tokens": 0, "seconds": time.perf_counter() - began, "timed_out": True}
    except subprocess.CalledProcessError as err:
        raise SystemExit(f"{setting} failed:\n{err.stderr[-2000:]}") from None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="builtin:smollm2-135m")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument(
        "--timeout",
        type=float,
        default=600,
        help="seconds before a contended run counts as "
        "collapsed (its tokens/s is then an upper bound)",
    )
    args = parser.parse_args(argv)
    print(
        f"{os.cpu_count()} CPUs; {args.model}; {len(PROMPTS)} prompts x 2 samples, "
        f"{args.max_tokens} new tokens"
    )
    rates: dict[str, tuple[float, float]] = {}
    for setting in args.settings:
        alone = measure(setting, args.model, args.max_tokens, False, args.timeout)
        busy = measure(setting, args.model, args.max_tokens, True, args.timeout)
        rate = lambda m: m["tokens"] / m["seconds"] if m["seconds"] else 0.0  # noqa: E731
        rates[setting] = (rate(alone), rate(busy))
        flag = " (timed out)" if busy.get("timed_out") else ""
        print(
            f"{setting:<11} threads {alone.get('threads', '?')}: alone {rate(alone):7.1f} tok/s, "
            f"contended {rate(busy):7.1f} tok/s{flag}"
        )
    print(f"{'setting':<11} {'contended/alone':>16} {'contended/untuned alone':>24}")
    base = rates.get("untuned", next(iter(rates.values())))[0]
    for setting, (alone, busy) in rates.items():
        print(
            f"{setting:<11} {busy / alone if alone else 0:>15.2f}x "
            f"{busy / base if base else 0:>23.2f}x"
        )
    if "agents" in rates:
        ratio = rates["agents"][1] / base if base else 0.0
        print(f"agents contended / untuned alone: {ratio:.2f}x (target >= 0.4x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
