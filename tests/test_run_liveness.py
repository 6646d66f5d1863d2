"""A run whose process died reads as ``interrupted``, not ``running``: pid check on this host,
heartbeat elsewhere. The dying process is a real one, killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from agents.cli import main
from agents.schemes.base import Heartbeat
from agents.store import HEARTBEAT_S, Store, Workspace, run_state, utcnow

_HOLDER = """
import sys, time
from agents.store import Store, Workspace
store = Store.open(Workspace.resolve(sys.argv[1]))
run = store.create_run("sft", {}, name="held")
store.set_run_status(run.id, "running")
print(run.id, flush=True)
time.sleep(120)
"""


def test_a_killed_process_leaves_an_interrupted_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        run_id = holder.stdout.readline().strip()  # type: ignore[union-attr]
        store = Store.open(Workspace.resolve(tmp_path))
        assert run_state(store.get_run(run_id)) == "running"
        assert store.get_run(run_id).owner.endswith(f":{holder.pid}")  # type: ignore[union-attr]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    run = store.get_run(run_id)
    assert run.status == "running"  # the row says so: nobody was left to change it ...
    assert run_state(run) == "interrupted"  # ... but its process is gone
    assert main(["runs", "list", "--workspace", str(tmp_path)]) == 0
    assert f"{run_id}  sft        interrupted" in capsys.readouterr().out
    assert main(["runs", "show", run_id, "--workspace", str(tmp_path)]) == 0
    assert f"interrupted (its process {run.owner} is gone" in capsys.readouterr().out
    store.close()


def test_a_run_on_another_host_is_judged_by_its_heartbeat(tmp_path: Path) -> None:
    store = Store.open(Workspace.resolve(tmp_path))
    run = store.create_run("sft", {})
    store.set_run_status(run.id, "running")
    run = store.get_run(run.id)
    run.owner = "elsewhere.example:4242"
    assert run_state(run, now=run.heartbeat_at) == "running"  # type: ignore[arg-type]
    late = run.heartbeat_at + timedelta(seconds=3 * HEARTBEAT_S + 1)  # type: ignore[operator]
    assert run_state(run, now=late) == "interrupted"
    run.heartbeat_at = None
    assert run_state(run) == "interrupted"
    store.close()


def test_this_process_is_alive_and_finished_runs_keep_their_status(tmp_path: Path) -> None:
    store = Store.open(Workspace.resolve(tmp_path))
    run = store.create_run("sft", {})
    store.set_run_status(run.id, "running")
    assert run_state(store.get_run(run.id)) == "running"
    assert store.get_run(run.id).owner.endswith(f":{os.getpid()}")  # type: ignore[union-attr]
    store.set_run_status(run.id, "finished")
    assert run_state(store.get_run(run.id)) == "finished"
    store.close()


def test_the_heartbeat_thread_advances_the_mark_and_stops(tmp_path: Path) -> None:
    store = Store.open(Workspace.resolve(tmp_path))
    run = store.create_run("sft", {})
    store.set_run_status(run.id, "running")
    first = store.get_run(run.id).heartbeat_at
    beat = Heartbeat(store, run.id, every_s=0.05)
    deadline = time.monotonic() + 10
    while store.get_run(run.id).heartbeat_at == first and time.monotonic() < deadline:
        time.sleep(0.05)
    beat.stop()
    last = store.get_run(run.id).heartbeat_at
    assert last is not None and first is not None and last > first
    assert last <= utcnow()
    time.sleep(0.2)
    assert store.get_run(run.id).heartbeat_at == last  # stopped
    store.close()
