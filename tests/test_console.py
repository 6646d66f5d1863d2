"""The console during a run shows progress, not the Trainer's per-step dictionaries; those land
in the run's log file (``reports/RUN_ID/run.log``) and its metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.cli import main
from agents.store import Store, Workspace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_training_steps_go_to_the_run_log_not_the_console(
    tiny_model_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run", "sft", "--workspace", str(tmp_path), "--base", str(tiny_model_dir),
            "--data", str(EXAMPLES / "sft_tiny.jsonl"), "--max-steps", "3",
            "--set", "training.max_length=256",
        ]
    )  # fmt: skip
    assert code == 0
    out, err = capfd.readouterr()
    assert "{'loss'" not in out + err and "'learning_rate'" not in out + err
    assert "round 0 train: done in" in err  # one line per finished stage
    assert err.count("done in") == 1
    (run,) = Store.open(Workspace.resolve(tmp_path)).list_runs()
    logged = (tmp_path / "reports" / run.id / "run.log").read_text()
    steps = [line for line in logged.splitlines() if "agents.steps: step" in line]
    assert len(steps) >= 3 and "'loss'" in steps[0]


def test_console_warnings_show_once_each() -> None:
    import logging

    from agents.cli import _Once

    once = _Once()

    def record(msg: str, args: tuple[object, ...], level: int = logging.WARNING) -> bool:
        return once.filter(logging.LogRecord("agents.x", level, __file__, 1, msg, args, None))

    assert record("attempt %d failed", (1,))
    assert not record("attempt %d failed", (2,))  # the same warning again: dropped
    assert record("another problem", ())
    assert record("progress %d", (1,), logging.INFO) and record("progress %d", (2,), logging.INFO)
