"""Agent distillation end to end on the real built-in models, with tiny settings.

Teacher Qwen2.5-Coder-0.5B, student SmolLM2-135M, gsm_symbolic and fanoutqa tasks over the first
100 Wikipedia summaries (plus the tasks' own articles), in the JSON tool-call mode: the command
line a user types. The tiny
teacher may keep no trajectory, so training is not required; when the student was trained, it
is exported and its card must list the tools it learnt to call.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.cli import main
from agents.episodes.agent_loop import DEMONSTRATIONS
from agents.schemes.agent_distill.graph import STAGES
from agents.store import Store, Workspace

pytestmark = pytest.mark.builtin

TOOL_NAMES = ["python_exec", "retrieve", "final_answer"]
TINY = [
    "mode=tools",  # the preset runs the code agent; tests/test_builtin_code_agent.py covers it
    "teacher=builtin:qwen2.5-coder-0.5b",  # the preset's is the 1.5B
    "tasks.families=[]",  # gsm_symbolic
    "tasks.corpus_facts=0",
    "tasks.heldout_corpus_facts=0",
    "closed_book=false",
    "corpus.limit=100",
    "teacher_agent.max_steps=2",
    "training.max_steps=1",
    "training.max_length=1024",
    "cot.max_tokens=128",
    "teacher_agent.max_tokens=128",
    "student_agent.max_tokens=96",
]


def test_agent_distill_on_builtin_models(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    workspace = tmp_path / "ws"
    args = ["run", "agent-distill", "--workspace", str(workspace), "--quiet"]
    args += ["--math", "2", "--factual", "1", "--heldout-math", "1", "--heldout-factual", "1"]
    args += ["--agent-steps", "2", "--candidates", "2"]
    for setting in TINY:
        args += ["--set", setting]
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()[0].split()
    assert first[0] == "run" and first[2] == "finished"
    run_id = first[1]

    store = Store.open(Workspace.resolve(workspace))
    assert store.get_run(run_id).status == "finished"
    stages = store.stages(run_id)
    assert [(s.name, s.status) for s in stages] == [(name, "finished") for name, _ in STAGES]
    metrics = {s.name: s.metrics for s in stages}
    assert (metrics["setup"]["tasks"], metrics["setup"]["heldout"]) == (3, 2)

    # The teacher ran the tool loop on every training task; its trajectories are well formed:
    # every tool call is answered by a tool message with its id, every unusable reply by an
    # error turn.
    agent = [t for t in store.trajectories(run_id, role="teacher") if t.stage == "agent"]
    assert len(agent) == 3
    observations = 0
    for row in agent:
        assert [t["function"]["name"] for t in row.tools] == TOOL_NAMES
        turns = row.messages[2 + len(DEMONSTRATIONS) :]
        assert 1 <= row.meta["steps"] <= 2
        assert sum(m["role"] == "assistant" for m in turns) == row.meta["steps"]
        for k, message in enumerate(turns):
            if message["role"] != "assistant":
                continue
            following = turns[k + 1] if k + 1 < len(turns) else None
            calls = message.get("tool_calls") or []
            if not calls:
                assert following["role"] == "user" and following["content"].startswith("Error:")
            elif calls[0]["function"]["name"] != "final_answer":
                assert following["role"] == "tool"
                assert following["tool_call_id"] == calls[0]["id"]
                observations += 1
    assert observations >= 1, "the teacher never got a tool observation"

    filtered = metrics["filter"]
    assert filtered["trajectories"] == 3
    dropped = sum(
        filtered[f"dropped_{why}"] for why in ("wrong_answer", "parse_error", "step_limit")
    )
    assert filtered["kept"] + dropped == 3
    assert filtered["keep_rate"] == pytest.approx(filtered["kept"] / 3)
    assert len([t for t in agent if t.meta["kept"]]) == filtered["kept"]

    assert (workspace / "reports" / run_id / "report.md").read_text().strip()
    scores = {s.name for s in stages if "accuracy" in s.metrics}
    assert {"eval_student_base", "eval_teacher"} <= scores

    students = store.checkpoints(run_id, role="student")
    if not students:
        assert metrics["train_student"]["skipped"] == "the filter kept no trajectory"
        return
    assert metrics["train_student"]["examples"] == filtered["kept"]
    out = tmp_path / "agent"
    assert main(["export", run_id, "--out", str(out), "--workspace", str(workspace)]) == 0
    card = json.loads((out / "agent_card.json").read_text())
    assert [t["function"]["name"] for t in card["tools"]] == TOOL_NAMES
    assert (out / "model.safetensors").exists()
