"""Latency helpers the benchmark scripts share: time a call n times, summarise as p50/p95."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 of ``samples`` in milliseconds."""
    ms = sorted(s * 1000 for s in samples)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]


def timed(fn: Callable[[int], object], n: int, warmup: int = 3) -> list[float]:
    """Wall times of ``fn(0) .. fn(n - 1)`` after a few warm-up calls."""
    for i in range(min(warmup, n)):
        fn(i)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return samples
