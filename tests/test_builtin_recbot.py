"""RecBot end to end on the real built-in models and the real MovieLens catalog.

The preset's models: Qwen2.5-Coder-0.5B (bf16) plays Parser, Planner and the simulated user for
two-round users; SmolLM2-135M is fine-tuned on its verified turns and evaluated with the
baselines on held-out users; the student is exported and answers a command through
``agents chat recbot``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from agents.cli import main
from agents.store import Store, Workspace

pytestmark = pytest.mark.builtin

SETTINGS = [
    "users.train=8",
    "users.heldout=4",
    "users.scenarios=[multi]",
    "users.max_turns=2",
    "eval_teacher=false",
    "training.epochs=2",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    workspace = tmp_path_factory.mktemp("recbot") / "ws"
    args = ["run", "recbot", "--workspace", str(workspace), "--quiet"]
    for setting in SETTINGS:
        args += ["--set", setting]
    assert main(args) == 0
    store = Store.open(Workspace.resolve(workspace))
    run = store.list_runs()[0]
    assert run.status == "finished"
    return workspace, run.id


def _metrics(workspace: Path, run_id: str) -> dict[str, dict]:
    store = Store.open(Workspace.resolve(workspace))
    return {s.name: s.metrics or {} for s in store.stages(run_id)}


def test_the_teacher_parses_and_plans_on_the_real_catalog(finished: tuple[Path, str]) -> None:
    metrics = _metrics(*finished)
    setup = metrics["setup"]
    assert setup["items"] == 1681 and setup["omdb_matched"] > 1300
    teacher = metrics["teacher_episodes"]
    assert teacher["items"] == 8
    assert teacher["json_valid"] >= 0.5, teacher  # the 0.5B writes the preferences schema
    store = Store.open(Workspace.resolve(finished[0]))
    rows = store.trajectories(finished[1], role="teacher", stage="episodes")
    called = {
        call["function"]["name"]
        for row in rows
        for turn in row.meta["turns"]
        for message in turn["planner_messages"]
        for call in message.get("tool_calls") or []
    }
    assert {"filter_items", "aggregate_feed"} <= called, called
    for stage in ("eval_popularity", "eval_collaborative", "eval_retrieval", "eval_student_base"):
        assert metrics[stage]["items"] == 4


def test_the_student_is_trained_exported_and_chats(
    finished: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace, run_id = finished
    metrics = _metrics(workspace, run_id)
    kept = metrics["filter"]
    if not kept["parser_examples"]:
        pytest.fail(f"the teacher parsed no command exactly: {metrics['teacher_episodes']}")
    assert metrics["train_student"]["examples"] >= 2
    assert metrics["eval_student"]["items"] == 4
    # the untrained 135M writes no preferences JSON; trained on the teacher's turns it does
    assert metrics["eval_student"]["json_valid"] > metrics["eval_student_base"]["json_valid"]
    out = tmp_path / "agent"
    assert main(["export", run_id, "--out", str(out), "--workspace", str(workspace)]) == 0
    assert json.loads((out / "agent_card.json").read_text())["mode"] == "recbot"

    from agents.models import load_engine
    from agents.schemes.recbot.chat import chat, open_catalog

    engine = load_engine(str(out))
    printed = io.StringIO()
    commands = io.StringIO("I want a comedy from the 1990s.\n")
    chat(engine, open_catalog(Workspace.resolve(workspace)), source=commands, out=printed)
    text = printed.getvalue()
    assert text.count("Your feed:") == 2 and "Understood:" in text
