"""How many CPU threads torch uses: the CPUs this process may run on, and fewer while another
process keeps them busy.

torch splits every CPU operation over a pool of threads, one a core by default. When another
process holds one of the cores, every operation waits for the descheduled thread:
``bench/contention.py`` measured SmolLM2-135M on 2 cores beside one spinning process at 0.24x of
its speed alone with 2 threads, and at 0.61x with 1 thread (OpenMP's passive wait policy did not
help: 0.30x).

* :func:`configure` sets the count from the CPUs the process may use: its affinity mask and its
  cgroup's CPU quota, not the machine's core count.
* :func:`adapt`, called by the engines before each batch and by training before each step,
  times a short probe shaped like a small model's matrix products with that count and with one
  thread, and keeps the faster (at most once every :data:`ADAPT_EVERY_S` seconds, so its cost,
  a few milliseconds, stays negligible).

``AGENTS_THREADS`` overrides both: a number of threads (fixed), or ``untuned`` to leave torch's
own choice.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "AGENTS_THREADS"

#: Seconds between two measurements of :func:`adapt`.
ADAPT_EVERY_S = 2.0

#: One thread must be this much faster than the full count before it is chosen.
ONE_THREAD_MARGIN = 0.8

_last_adapted = float("-inf")


def _override() -> str:
    return os.environ.get(ENV, "").strip().lower()


def cgroup_cpus(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (``1.5`` for 150 ms per 100 ms), or None
    when there is none (cgroup v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us``)."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by its cgroup's CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpus()
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def threads_wanted() -> int | None:
    """The torch thread count to use: ``AGENTS_THREADS`` when it is a number, None when it says
    ``untuned``, else :func:`available_cpus`.

    Raises:
        ConfigError: ``AGENTS_THREADS`` is neither a positive number nor ``untuned``.
    """
    from agents.config import ConfigError  # the CLI reports it in one line, exit 2

    setting = _override()
    if setting == "untuned":
        return None
    if setting:
        try:
            wanted = int(setting)
        except ValueError:
            raise ConfigError(
                f"{ENV} must be a number of threads or 'untuned', not {setting!r}"
            ) from None
        if wanted < 1:
            raise ConfigError(f"{ENV} must be at least 1, not {wanted}")
        return wanted
    return available_cpus()


def configure() -> int:
    """Set torch's intra-op threads (:func:`threads_wanted`); returns the count in force."""
    import torch

    wanted = threads_wanted()
    if wanted is not None and torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
        log.info("torch uses %d CPU threads", wanted)
    return torch.get_num_threads()


def _probe_seconds(threads: int, repeats: int = 12) -> float:
    """Seconds for a few matrix products the size of a small model's decoding step (a batch of
    16 rows through a 576 x 1536 projection), with ``threads`` torch threads; the best of 3."""
    import torch

    torch.set_num_threads(threads)
    rows, weight = torch.ones(16, 576), torch.ones(576, 1536)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(3):
            began = time.perf_counter()
            for _ in range(repeats):
                rows @ weight
            best = min(best, time.perf_counter() - began)
    return best


def choose(full: float, one: float, threads: int) -> int:
    """``threads``, unless one thread was clearly faster in the probe (``one`` seconds against
    ``full``): then 1."""
    return 1 if one < ONE_THREAD_MARGIN * full else threads


def adapt(*, force: bool = False) -> int:
    """Use fewer threads while another process keeps the CPUs busy, all of them again after.

    Measures :func:`_probe_seconds` with the configured count and with one thread, at most once
    every :data:`ADAPT_EVERY_S` seconds (``force`` measures now). A fixed ``AGENTS_THREADS`` or
    a single CPU leaves the count alone. Returns the count in force.
    """
    global _last_adapted
    import torch

    wanted = threads_wanted()
    if wanted is None or _override() or wanted == 1:
        return torch.get_num_threads()
    now = time.monotonic()
    if not force and now - _last_adapted < ADAPT_EVERY_S:
        return torch.get_num_threads()
    _last_adapted = now
    before = torch.get_num_threads()
    picked = choose(_probe_seconds(wanted), _probe_seconds(1), wanted)
    torch.set_num_threads(picked)
    if picked != before:
        log.info(
            "torch threads %d -> %d (%s)", before, picked, "contended" if picked == 1 else "free"
        )
    return picked
