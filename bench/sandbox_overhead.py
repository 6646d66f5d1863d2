"""Per-call overhead of the sandbox for a trivial snippet, one-shot and in a warm session.

Baselines measured in the same run: an unsandboxed ``python -c`` process for one-shot calls and
an in-process ``exec`` for session calls.

Usage: python bench/sandbox_overhead.py [--session-calls 200] [--oneshot-calls 30]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import sandbox

TARGET_MS = 50.0


def timings_ms(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def report(name: str, values: list[float], base: list[float]) -> float:
    p50, p95 = p(values, 50), p(values, 95)
    b50, b95 = p(base, 50), p(base, 95)
    print(f"{name:<9} sandbox  p50 {p50:9.4f} ms  p95 {p95:9.4f} ms")
    print(f"{'':<9} baseline p50 {b50:9.4f} ms  p95 {b95:9.4f} ms  ratio p50 x{p50 / b50:.1f}")
    return p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session-calls", type=int, default=200)
    parser.add_argument("--oneshot-calls", type=int, default=30)
    args = parser.parse_args()
    print(f"backend: {sandbox.isolation_backend()}")

    with sandbox.Session() as session:
        session.run("1+1")  # start the worker outside the measurement
        warm = timings_ms(lambda: session.run("1+1"), args.session_calls)
    code = compile("1+1", "<bench>", "exec")
    in_process = timings_ms(lambda: exec(code, {}), args.session_calls)
    oneshot = timings_ms(lambda: sandbox.run("1+1"), args.oneshot_calls)
    spawn = timings_ms(
        lambda: subprocess.run([sys.executable, "-c", "1+1"], check=True), args.oneshot_calls
    )

    session_p50 = report("session", warm, in_process)
    oneshot_p50 = report("one-shot", oneshot, spawn)
    print(f"one-shot / session p50 ratio: x{oneshot_p50 / session_p50:.0f}")
    verdict = "meets" if session_p50 <= TARGET_MS else "MISSES"
    print(f"warm-session p50 {session_p50:.3f} ms {verdict} the <= {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()
