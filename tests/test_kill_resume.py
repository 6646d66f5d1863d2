"""Signals for real: a Socratic run (scripted roles, the tiny model) in its own process is
killed with SIGKILL inside different stages, or interrupted with SIGINT, then resumed by a new
process; every table must then hold exactly what an uninterrupted run of the same config wrote:
nothing lost, nothing duplicated."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from socratic_runs import row_counts

from agents.store import Store, Workspace, run_state

DRIVER = Path(__file__).resolve().parent / "kill_driver.py"


def _drive(root: Path, model: Path, *extra: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, str(DRIVER), str(root), str(model), *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode, done.stdout.split()


def _rows(root: Path, run_id: str) -> tuple[Store, dict[str, Counter]]:
    store = Store.open(Workspace.resolve(root / "ws"))
    return store, row_counts(SimpleNamespace(store=store, run_id=run_id))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Counter]:
    root = tmp_path_factory.mktemp("straight")
    code, out = _drive(root, tiny_model_dir)
    assert code == 0 and out[-1] == "finished", out
    store, rows = _rows(root, out[0])
    store.close()
    return rows


@pytest.mark.parametrize(
    ("die", "stage"), [("judge", "verify"), ("qc", "quality"), ("train", "train_solver")]
)
def test_sigkill_inside_a_stage_then_resume_equals_an_uninterrupted_run(
    die: str, stage: str, tmp_path: Path, tiny_model_dir: Path, straight: dict[str, Counter]
) -> None:
    code, out = _drive(tmp_path, tiny_model_dir, "--die", die)
    assert code == -signal.SIGKILL, out
    run_id = out[0]
    store, _ = _rows(tmp_path, run_id)
    run = store.get_run(run_id)
    assert run.status == "running" and run_state(run) == "interrupted"
    stages = {s.name: s.status for s in store.stages(run_id) if s.round == 1}
    assert stages[stage] == "running"  # killed inside it: started, never committed
    store.close()

    code, out = _drive(tmp_path, tiny_model_dir, "--resume", run_id)
    assert code == 0 and out == [run_id, "finished"], out
    store, rows = _rows(tmp_path, run_id)
    for table, want in straight.items():
        assert rows[table] == want, f"{table} differs after a kill in {stage}"
    assert set(rows["stages"].values()) == {1}  # every stage once
    store.close()


def test_sigint_pauses_and_a_new_process_resumes(
    tmp_path: Path, tiny_model_dir: Path, straight: dict[str, Counter]
) -> None:
    code, out = _drive(tmp_path, tiny_model_dir, "--die", "qc", "--signal", "int")
    assert code == 130, out
    run_id = out[0]
    store, _ = _rows(tmp_path, run_id)
    assert store.get_run(run_id).status == "paused"
    store.close()
    code, out = _drive(tmp_path, tiny_model_dir, "--resume", run_id)
    assert code == 0 and out == [run_id, "finished"], out
    store, rows = _rows(tmp_path, run_id)
    assert rows == straight
    store.close()
