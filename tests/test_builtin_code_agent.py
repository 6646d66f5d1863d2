"""The code agent distilled end to end on the real built-in models, then exported and used.

Teacher Qwen2.5-Coder-1.5B (the preset's) writes Python for 12 multi-digit products and looks up a
fact it wrote a question about (a long-tail fact of the first 200 Wikipedia summaries) with
``retrieve`` called from inside its code; SmolLM2-135M is fine-tuned on the kept trajectories,
exported, and loaded back with ``load_agent``: it must compute 48271 * 9173 exactly by running
Python, and call ``retrieve`` for the held-out question about a corpus fact.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.cli import main
from agents.export import load_agent
from agents.store import Store, Workspace
from tools.retrieval import build_default_corpus

pytestmark = pytest.mark.builtin

SETTINGS = [
    "mode=code",
    "tasks.math=12",
    "tasks.heldout_math=1",
    "tasks.factual=0",
    "tasks.heldout_factual=0",
    "tasks.corpus_facts=1",
    "tasks.heldout_corpus_facts=1",
    "facts.articles=6",
    "corpus.limit=200",
    "cot_baseline=false",
    "eval_teacher=false",
    "closed_book=false",
    "first_thought=false",
    "teacher_agent.max_steps=3",
    "teacher_agent.max_tokens=128",
    "student_agent.max_steps=3",
    "student_agent.max_tokens=128",
    "self_consistency.candidates=2",
    "training.epochs=4",  # 12 optimizer steps: 2 epochs at the preset's batch 8 are 4
    "training.grad_accum=1",
    "training.max_length=1024",
]
FAMILIES = (
    '[{"name": "products", "config": '
    '{"min_terms": 2, "max_terms": 2, "min_digits": 3, "max_digits": 5}}]'
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("code_agent")
    workspace = root / "ws"
    args = ["run", "agent-distill", "--workspace", str(workspace), "--quiet"]
    for setting in [*SETTINGS, f"tasks.families={FAMILIES}"]:
        args += ["--set", setting]
    assert main(args) == 0
    store = Store.open(Workspace.resolve(workspace))
    run = store.list_runs()[0]
    assert run.status == "finished"
    out = root / "agent"
    assert main(["export", run.id, "--out", str(out), "--workspace", str(workspace)]) == 0
    return out, workspace, run.id


def test_the_run_keeps_code_trajectories(exported: tuple) -> None:
    _, workspace, run_id = exported
    store = Store.open(Workspace.resolve(workspace))
    metrics = {s.name: s.metrics for s in store.stages(run_id)}
    assert metrics["write_facts"]["kept"] >= 1
    # The teacher wrote Python for every task and looked its corpus fact up.
    assert metrics["teacher_agent"]["with_python"] == 1.0
    assert metrics["teacher_agent"]["with_retrieve"] > 0
    kept = metrics["filter"]
    assert kept["kept"] >= 4, kept
    assert kept["kept_with_python"] == 1.0  # every code step is a python_exec
    card = json.loads((exported[0] / "agent_card.json").read_text())
    assert card["mode"] == "code"


def test_the_exported_student_computes_a_product_in_python(exported: tuple) -> None:
    agent = load_agent(exported[0])
    episode = agent.run("What is 48271 * 9173?", max_steps=3, max_tokens=128)
    assert episode.tool_uses.get("python_exec", 0) >= 1, episode.messages[-3:]
    assert episode.answer is not None
    assert episode.answer.replace(",", "").strip() == str(48271 * 9173), episode.messages[-3:]


def test_the_exported_student_looks_up_a_corpus_fact(exported: tuple) -> None:
    out, workspace, run_id = exported
    store = Store.open(Workspace.resolve(workspace))
    facts = [i for i in store.items(run_id) if i.source == "corpus_facts" and i.kind == "heldout"]
    assert facts, "the teacher wrote no held-out fact question"
    corpus = build_default_corpus(Workspace.resolve(workspace).chroma_dir, limit=200)
    agent = load_agent(out)
    episode = agent.run(facts[0].content["question"], corpus=corpus, max_steps=3, max_tokens=128)
    assert episode.tool_uses.get("retrieve", 0) >= 1, episode.messages[-3:]
