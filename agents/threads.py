"""How many CPU threads torch uses: the CPUs this process may actually run on.

torch sizes its CPU thread pool from the machine's cores; in a container or under ``taskset`` the
process may use fewer, and oversubscribed OpenMP threads wait on each other at every operation.
:func:`configure` sets the count from the CPU affinity mask and the cgroup's CPU quota instead;
``AGENTS_THREADS`` overrides it (a number of threads, or ``untuned`` to leave torch's own choice).

What this does not yet fix: another busy process on the same cores. ``bench/contention.py``
measured SmolLM2-135M generating beside one spinning process on 2 cores: 2 threads fell from
83.6 to 19.7 tokens/s (0.24x), 1 thread held 51.2 tokens/s (0.61x of 2 threads alone);
OpenMP's passive wait policy did not help (0.30x). ``AGENTS_THREADS=1`` is the remedy on a
shared machine until the engines pick their thread count from a measurement.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)

ENV = "AGENTS_THREADS"


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
