"""Socratic co-evolution end to end on the real built-in models, with tiny settings.

Teacher Qwen2.5-Coder-0.5B, Solver and Generator SmolLM2-135M, 1-digit chain_sum seeds:
the command line a user types, the seed filter (its band opened wide, so the kept seeds are
known), the warm-up on its own pool with Teacher-written solutions, one round, then export of
the trained Solver as a small agent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

from agents.cli import main
from agents.export import load_agent
from agents.store import Store, Workspace

pytestmark = pytest.mark.builtin

TINY = [
    "solve.max_tokens=96",
    "eval.samples=1",
    "eval.max_tokens=96",
    "verify.max_tokens=64",
    "verify.retries=1",
    "refine.max_tokens=192",
    "refine.max_problems=2",
    "quality.max_tokens=160",
    "utility.samples=2",
    "warmup.max_steps=2",
    "warmup.max_length=256",
    "solver_training.max_steps=1",
    "solver_training.max_length=256",
    "generator_training.max_steps=1",
    "eval_base=false",
    # 1-digit sums, 6 samples at temperature 1: chain_sum has no reference solutions, so only
    # a question with right and wrong samples yields pairs (in bfloat16 at 0.8 the 135M Solver
    # got all 2 x 3 samples right; 3-term sums at 1.0: 1 right of 12; 2-digit: 0 of 12)
    "seeds.families=[{name: chain_sum, config: {max_terms: 2, max_digits: 1}}]",
    "solve.temperature=1.0",
    "seeds.warmup_pool=2",
    "calibrate.candidates=4",
    "calibrate.samples=2",
    "calibrate.max_tokens=64",
    "calibrate.min_success=0",
    "calibrate.max_success=1",
]


def test_socratic_round_on_builtin_models_then_export(tmp_path: Path, capsys) -> None:
    workspace = tmp_path / "ws"
    args = ["run", "socratic", "--workspace", str(workspace), "--quiet"]
    args += ["--seeds", "3", "--heldout", "3", "--samples", "6", "--rounds", "1"]
    for setting in TINY:
        args += ["--set", setting]
    assert main(args) == 0
    run_id = capsys.readouterr().out.split()[1]

    store = Store.open(Workspace.resolve(workspace))
    run = store.get_run(run_id)
    assert run.status == "finished"
    stages = {(s.round, s.name): s for s in store.stages(run_id)}
    expected = {"setup", "calibrate", "warmup", "eval", "select", "solve", "verify", "pairs"}
    expected |= {"train_solver"}
    expected |= {"zones", "refine", "quality", "utility", "train_generator", "curriculum"}
    assert expected <= {name for _, name in stages}
    assert all(s.status == "finished" for s in stages.values())

    # The filter tried 4 candidates twice each and, with the band [0, 1], kept the first 3.
    calibrate = stages[(0, "calibrate")].metrics
    assert (calibrate["candidates"], calibrate["kept"]) == (4, 3)
    assert len(store.trajectories(run_id, role="solver", stage="calibrate")) == 8
    # chain_sum has no worked solutions: the Teacher wrote them (or the answer line stood in).
    assert sum(stages[(0, "warmup")].metrics["solutions"].values()) == 2
    held = stages[(0, "eval")].metrics
    assert held["interval"]["low"] <= held["accuracy"] <= held["interval"]["high"]

    # k = 6 samples on 3 questions, each with a rule or judge verdict; a question with right
    # and wrong samples yields pairs.
    verify = stages[(1, "verify")].metrics
    assert verify["correct"] + verify["incorrect"] + verify["unverifiable"] == 18
    assert stages[(1, "pairs")].metrics["pairs"] >= 1
    assert len(store.trajectories(run_id, role="solver", round=1)) >= 6

    # DPO moved the Solver's adapter away from the warm-up adapter it started from.
    solver = {c.round: c for c in store.checkpoints(run_id, role="solver")}
    assert set(solver) == {0, 1} and solver[1].parent_id == solver[0].id
    before = load_file(Path(solver[0].adapter_path) / "adapter_model.safetensors")
    after = load_file(Path(solver[1].adapter_path) / "adapter_model.safetensors")
    assert any(not before[k].equal(after[k]) for k in before)

    assert (workspace / "reports" / run_id / "report.md").read_text().count("round") > 0
    assert (workspace / "reports" / run_id / "report.png").stat().st_size > 10_000
    teacher = [u for (role, _), u in store.usage(run_id).items() if role == "teacher"]
    assert teacher and teacher[0].samples >= 1  # the Teacher was asked (judge, refine or QC)

    # The trained Solver exports as a small agent that loads and answers.
    out = tmp_path / "agent"
    assert main(["export", run_id, "--out", str(out), "--workspace", str(workspace)]) == 0
    agent = load_agent(out)
    assert agent.card.scheme == "socratic" and "boxed" in (agent.card.system_prompt or "")
    assert agent.card.eval_scores  # held-out accuracy per round travels with the agent
    answer = agent.ask(
        "Tom has 3 apples and buys 4 more. How many apples does he have?", max_tokens=48
    )
    assert answer.strip()
