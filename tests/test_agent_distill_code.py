"""Agent distillation in code mode on scripted engines, with real (tiny-model) training.

Every agent step is a Python block run in the sandbox, ``retrieve`` is called from inside the
code, and the teacher also writes questions about corpus articles (``write_facts``). The run
reports per task source, records tool use in the kept trajectories, and its export runs in the
mode it was trained in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agent_runs import make_config, new_world, open_run
from agent_world import FACTS, FakeCorpus, ScriptedAgent

from agents.episodes.code_agent import CODE_DEMONSTRATIONS, CODE_SYSTEM_PROMPT
from agents.export import AgentCard, ExportedAgent, card_for_run
from agents.schemes.agent_distill.graph import AgentDistillation
from agents.schemes.agent_distill.sources import CORPUS_FACTS, parse_fact

pytestmark = pytest.mark.usefixtures("sandbox_backend")

TRAIN = [
    "What is 2 + 3?",  # kept: python, then final_answer
    "What is 4 + 5? #crash",  # kept, with its execution error
    "What is the capital of Freedonia?",  # kept: retrieve inside the code
    "What is 6 + 7? #wrong",  # dropped: wrong answer
    "What is 10 + 11? #noparse",  # dropped: never a code block
]
HELDOUT = ["What is 20 + 22? #sc", "What is the capital of Sylvania?"]


@dataclass
class CodeRun:
    run: AgentDistillation
    world: dict[str, ScriptedAgent]
    metrics: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def code_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[CodeRun]:
    root = tmp_path_factory.mktemp("code")
    FACTS.clear()
    config = make_config(
        root,
        tiny_model_dir,
        TRAIN,
        HELDOUT,
        tasks={"corpus_facts": 2, "heldout_corpus_facts": 2},
        mode="code",
        corpus={"limit": 60},
        facts={"articles": 3},
        teacher_agent={"max_steps": 3, "max_tokens": 64, "sandbox_timeout": 5},
        student_agent={"max_steps": 3, "max_tokens": 64, "sandbox_timeout": 5},
        self_consistency={"candidates": 4, "temperature": 0.4},
    )
    world = new_world()
    run = open_run(root, config, world)
    run.run()
    metrics = {s.name: s.metrics or {} for s in run.store.stages(run.run_id)}
    yield CodeRun(run, world, metrics)
    run.close()


def test_every_stage_finishes(code_run: CodeRun) -> None:
    stages = code_run.run.store.stages(code_run.run.run_id)
    assert stages and all(s.status == "finished" for s in stages)
    assert "skipped" not in code_run.metrics["eval_student_sc"]


def test_the_teacher_writes_checked_corpus_fact_questions(code_run: CodeRun) -> None:
    facts = code_run.metrics["write_facts"]
    # 12 articles tried; every second draft breaks a check (long answer / not in the article).
    assert facts["articles"] == 12
    assert facts["dropped_long_answer"] == 3 and facts["dropped_not_in_article"] == 3
    assert facts["kept"] == 4 and facts["tasks"] == 2 and facts["heldout"] == 2
    items = [i for i in code_run.run.store.items(code_run.run.run_id) if i.source == CORPUS_FACTS]
    assert len(items) == 4
    for item in items:
        # The answer is a span of its article, which the item names as evidence.
        assert item.meta["evidence"] in item.content["question"]
        assert item.answer and item.answer.lower() not in item.content["question"].lower()
    train_titles = {i.meta["evidence"] for i in items if i.kind == "task"}
    heldout_titles = {i.meta["evidence"] for i in items if i.kind == "heldout"}
    assert not train_titles & heldout_titles


def test_teacher_trajectories_are_python_blocks_with_the_code_prompt(code_run: CodeRun) -> None:
    rows = code_run.run.store.trajectories(code_run.run.run_id, role="teacher", stage="agent")
    assert len(rows) == len(TRAIN) + 2
    for row in rows:
        assert row.tools is None
        assert row.messages[0] == {"role": "system", "content": CODE_SYSTEM_PROMPT}
    kept = code_run.run.kept()
    assert len(kept) == 5  # 2 + 3, the crash, the capital and both corpus facts
    replies = [m["content"] for r in kept for m in r.messages if m["role"] == "assistant"]
    assert all("```python" in reply for reply in replies[len(CODE_DEMONSTRATIONS) :])


def test_filter_reports_tool_use_in_the_kept_trajectories(code_run: CodeRun) -> None:
    kept = code_run.metrics["filter"]
    assert kept["kept"] == 5
    # Math and facts run python; the capital and both facts also retrieve (3 of 5).
    assert kept["kept_with_python"] == 1.0
    assert kept["kept_with_retrieve"] == pytest.approx(3 / 5)
    assert kept["kept_mean_steps"] == pytest.approx((2 + 3 + 2 + 2 + 2) / 5)
    assert kept[f"kept_{CORPUS_FACTS}"] == 2


def test_evaluations_report_every_task_source_with_intervals(code_run: CodeRun) -> None:
    for stage in ("eval_student_closed", "eval_teacher_closed", "eval_student", "eval_cot"):
        metrics = code_run.metrics[stage]
        assert set(metrics["sources"]) == {"heldout.jsonl", CORPUS_FACTS}, stage
        for source in metrics["sources"]:
            assert metrics[f"{source}_items"] == 2
            assert {"low", "high"} <= set(metrics[f"{source}_interval"])
    # Closed book the scripted student cannot answer the facts; with retrieve, trained, it does.
    assert code_run.metrics["eval_student_closed"][f"{CORPUS_FACTS}_accuracy"] == 0.0
    assert code_run.metrics["eval_student"][f"{CORPUS_FACTS}_accuracy"] == 1.0
    assert code_run.metrics["eval_student"]["with_retrieve"] == pytest.approx(3 / 4)
    assert code_run.metrics["eval_student_base"]["accuracy"] == 0.0


def test_report_has_the_per_source_table_and_paired_tests(code_run: CodeRun) -> None:
    text = code_run.run.report().read_text()
    assert "per task source" in text
    assert f"{CORPUS_FACTS}: student before → student after" in text
    assert "CoT student → student after" in text
    assert "≥ 1 retrieve" in text


def test_the_export_runs_in_the_mode_it_was_trained_in(code_run: CodeRun, tmp_path: Path) -> None:
    card, _ = card_for_run(code_run.run.store, code_run.run.run_id)
    assert card.mode == "code"
    assert card.system_prompt == CODE_SYSTEM_PROMPT
    assert card.demonstrations == CODE_DEMONSTRATIONS
    card.write(tmp_path)
    assert json.loads((tmp_path / "agent_card.json").read_text())["mode"] == "code"
    agent = ExportedAgent(
        engine=ScriptedAgent("teacher"), card=AgentCard.read(tmp_path), path=tmp_path
    )
    episode = agent.run("What is 48 + 9173?", corpus=FakeCorpus())
    assert episode.answer == "9221"
    assert episode.tool_uses == {"python_exec": 2}
    looked_up = agent.run("What is the capital of Genovia?", corpus=FakeCorpus())
    assert looked_up.answer == "Pyrus" and looked_up.tool_uses["retrieve"] == 1


@pytest.mark.parametrize(
    ("draft", "why"),
    [
        ("Question: When was Oslo founded?\nAnswer: 1040", ("When was Oslo founded?", "1040")),
        ("Q: nothing", "unparsed"),
        ("Question: When was Oslo founded\nAnswer: 1040", "unparsed"),
        ("Question: When was Oslo founded?\nAnswer: in the year 1040 by Harald", "long_answer"),
        ("Question: When was Oslo founded?\nAnswer: 1066", "not_in_article"),
        ("Question: Was Oslo founded in 1040?\nAnswer: 1040", "answer_in_question"),
        ("Question: When was the city founded?\nAnswer: 1040", "no_subject"),
        # A word of the title is enough of a handle for retrieval.
        (
            "Question: When was the old town of Oslo founded?\nAnswer: 1040",
            ("When was the old town of Oslo founded?", "1040"),
        ),
    ],
)
def test_fact_drafts_are_checked(draft: str, why: Any) -> None:
    article = "Oslo is the capital of Norway. It was founded in the year 1040 by Harald Hardrada."
    assert parse_fact(draft, "Oslo", article, max_words=5) == why
