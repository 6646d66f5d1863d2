"""Strategy teaching end to end on the real built-in models, with tiny settings.

Teacher (also customer simulator) Qwen2.5-Coder-0.5B, judge Qwen2.5-Coder-1.5B (not the teacher),
student SmolLM2-135M, the real τ²-bench retail domain: the command line a user types, with both
baselines (generic guidance, a fine-tuned student: one real LoRA step), then an audit of what it
learnt through ``agents audit``. Whether the tiny run writes any strategy depends on the judge,
so the audit part only runs when it did; the graph, the dialogues and the evaluations must
always complete. No transfer student: it would add two more held-out agents of 1.5B.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from agents.cli import main
from agents.episodes.dialogue import speaks_as_agent
from agents.store import Store, Workspace
from strategies import StrategyLibrary

pytestmark = pytest.mark.builtin

TINY = [
    "dialogue.max_tool_calls=2",
    "dialogue.max_tokens=96",
    "dialogue.customer_max_tokens=48",
    "scenarios.max_per_round=2",
    "scenarios.teacher_scenarios=1",
    "refine.writer_max_tokens=160",
    "heldout_turns=1",
    "evaluation.max_turns=2",
    "evaluation.max_tool_calls=2",
    "training.max_steps=1",
    "training.batch_size=1",
    "transfer_student=null",
]


def test_strategy_teaching_on_builtin_models(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    args = ["run", "strategy-teaching", "--workspace", str(workspace), "--quiet"]
    args += ["--rounds", "1", "--train-tasks", "1", "--heldout-tasks", "1", "--turns", "1"]
    args += ["--iterations", "1"]
    for setting in TINY:
        args += ["--set", setting]
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()[0].split()
    assert first[0] == "run" and first[2] == "finished"
    run_id = first[1]

    store = Store.open(Workspace.resolve(workspace))
    stages = [(s.round, s.name, s.status) for s in store.stages(run_id)]
    assert stages == [
        (0, "setup", "finished"),
        (1, "scenarios", "finished"),
        (1, "refine", "finished"),
        (1, "generic", "finished"),
        (1, "finetune", "finished"),
        (1, "eval_dialogues", "finished"),
        (1, "eval_judge", "finished"),
    ]
    metrics = {s.name: s.metrics for s in store.stages(run_id)}
    assert metrics["scenarios"]["dialogues"] == 1 and metrics["scenarios"]["student_turns"] == 1
    # every scenario (the weak turn, if any, and the teacher's) went through refinement
    assert metrics["refine"]["scenarios"] == metrics["scenarios"]["scenarios"] >= 1
    assert metrics["generic"]["generic_strategies"] <= metrics["generic"]["library_strategies"]
    if metrics["refine"]["scenarios"]:
        assert metrics["finetune"]["steps"] == 1 and metrics["finetune"]["examples"] >= 1
    held = metrics["eval_dialogues"]
    agents = ["student", "student_generic", "student_strategies", "teacher"]
    agents += ["student_finetuned"] if "steps" in metrics["finetune"] else []
    for agent in agents:
        assert 0 <= held[agent]["success_ci"][0] <= held[agent]["success"] <= 1
        assert held[agent]["turns"] <= 2 and sum(held[agent]["ended"].values()) == 1
    assert "transfer" not in held and not held["_judge_is_teacher"]
    judged = metrics["eval_judge"]
    assert judged["judge"] == "builtin:qwen2.5-coder-1.5b" and judged["scenarios"] <= 1
    for comparison in ("strategies_vs_alone", "generic_vs_alone", "alone_vs_teacher"):
        outcome = judged.get(comparison)
        if judged["scenarios"]:
            counted = outcome["wins"] + outcome["ties"] + outcome["losses"] + outcome["unjudged"]
            assert counted == 1
    report = (workspace / "reports" / run_id / "report.md").read_text()
    assert "Strategy teaching" in report and "Held-out comparison" in report

    # the dialogues are well formed: each tool call is answered by its tool message; the
    # simulated customer opens the chat itself and never speaks as the agent
    for row in store.trajectories(run_id):
        for k, message in enumerate(row.messages):
            for call in message.get("tool_calls") or []:
                assert row.messages[k + 1]["tool_call_id"] == call["id"]
        if row.stage in ("scenarios", "eval_dialogues"):
            said = [m["content"] for m in row.messages if m["role"] == "user"]
            assert said and said[0].startswith("Hi, ")
            assert all(text.strip() and not speaks_as_agent(text) for text in said), said

    library = StrategyLibrary.open(store, Workspace.resolve(workspace).chroma_dir, "retail")
    learnt = [s for s in library.strategies() if s.run_id == run_id]
    assert len(learnt) == metrics["refine"]["new_strategies"]
    if not learnt:
        return
    # A reviewer audits the first one through the terminal chat, from stdin.
    target = learnt[0].id
    lines = f"/show {target}\n/why {target}\n/reject {target} too vague\ny\n/quit\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    assert main(["audit", "--workspace", str(workspace), "--reviewer", "ci"]) == 0
    out = capsys.readouterr().out
    assert str(target) in out
    assert library.get(target).status == "rejected"
    hits = library.retrieve(learnt[0].text, k=5)
    assert target not in {h.strategy.id for h in hits}  # a rejected strategy is never retrieved
