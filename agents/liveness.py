"""Is a run's process alive? A run records ``host:pid`` and a heartbeat while it runs; a run
still marked ``running`` whose process is gone reads as ``interrupted``."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Any

#: Seconds between heartbeats of a running run; three missed ones read as a dead process.
HEARTBEAT_S = 30.0


def this_owner() -> str:
    """``host:pid`` of this process, as :attr:`Run.owner` records it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def run_state(run: Any, now: datetime | None = None) -> str:
    """The run's status as a person should read it: ``interrupted`` for a run still marked
    ``running`` whose process is gone (its pid, on this host) or silent (no heartbeat for three
    intervals, on another host). ``--resume`` continues an interrupted run like a paused one."""
    if run.status != "running":
        return run.status
    host, _, pid = (run.owner or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return "running" if _pid_alive(int(pid)) else "interrupted"
    beat = run.heartbeat_at
    if beat is None:
        return "interrupted"
    if beat.tzinfo is None:
        beat = beat.replace(tzinfo=UTC)
    silent = ((now or datetime.now(UTC)) - beat).total_seconds()
    return "running" if silent < 3 * HEARTBEAT_S else "interrupted"
