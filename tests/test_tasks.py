"""Tasks: gsm_symbolic splits, boxed solutions, FanOutQA factual tasks, the JSONL task format."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import tools.retrieval as retrieval_module
from agents.eval.answers import contains_answer
from agents.tasks import (
    MathTask,
    Task,
    boxed_solution,
    factual_splits,
    fanoutqa_tasks,
    gsm_symbolic_splits,
    read_math_tasks,
    write_math_tasks,
)
from tools.retrieval import CorpusUnavailable, wiki_summaries


def test_splits_have_exact_sizes_and_disjoint_templates() -> None:
    train, heldout = gsm_symbolic_splits(150, 40, seed=3)
    assert (len(train), len(heldout)) == (150, 40)
    train_templates = {task.template for task in train}
    heldout_templates = {task.template for task in heldout}
    assert None not in train_templates | heldout_templates
    assert not train_templates & heldout_templates
    assert all(task.source == "gsm_symbolic" and task.solution for task in train + heldout)


def test_heldout_share_sets_the_number_of_heldout_templates() -> None:
    _, heldout = gsm_symbolic_splits(10, 200, seed=1, heldout_share=0.1)
    assert len({task.template for task in heldout}) == round(85 * 0.1)
    _, heldout = gsm_symbolic_splits(10, 5, seed=1, heldout_share=0.001)
    assert len({task.template for task in heldout}) == 1


def test_splits_are_deterministic_and_depend_on_the_seed() -> None:
    first = gsm_symbolic_splits(60, 20, seed=7)
    again = gsm_symbolic_splits(60, 20, seed=7)
    other = gsm_symbolic_splits(60, 20, seed=8)
    assert first == again
    assert [t.question for t in first[0]] != [t.question for t in other[0]]
    assert {t.template for t in first[1]} != {t.template for t in other[1]}


def test_small_train_set_covers_many_templates() -> None:
    train, _ = gsm_symbolic_splits(100, 0, seed=0)
    assert len({task.template for task in train}) >= 40
    train, _ = gsm_symbolic_splits(128, 0, seed=4)
    per_template = Counter(task.template for task in train)
    assert max(per_template.values()) - min(per_template.values()) <= 1


def test_no_question_repeats_within_or_across_splits() -> None:
    train, heldout = gsm_symbolic_splits(400, 150, seed=2)
    questions = [task.question for task in train + heldout]
    assert len(questions) == len(set(questions))
    ids = [task.id for task in train + heldout]
    assert len(ids) == len(set(ids))


def test_zero_heldout_gives_an_empty_list() -> None:
    train, heldout = gsm_symbolic_splits(5, 0)
    assert len(train) == 5 and heldout == []


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"train": 0, "heldout": 1}, "train"),
        ({"train": 1, "heldout": -1}, "heldout"),
        ({"train": 1, "heldout": 1, "heldout_share": 0.0}, "heldout_share"),
        ({"train": 1, "heldout": 1, "heldout_share": 1.0}, "heldout_share"),
    ],
)
def test_bad_split_arguments_raise(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        gsm_symbolic_splits(**kwargs)


def test_boxed_solution_replaces_the_hash_line() -> None:
    train, _ = gsm_symbolic_splits(20, 0, seed=5)
    for task in train:
        boxed = boxed_solution(task)
        assert boxed is not None and "####" not in boxed
        assert boxed.endswith(f"The answer is \\boxed{{{task.answer}}}.")
        assert boxed.splitlines()[0] == task.solution.splitlines()[0]


def test_boxed_solution_without_a_hash_line_or_solution() -> None:
    task = MathTask(id="a", question="1+1?", answer="2", solution="1 + 1 = 2.\n")
    assert boxed_solution(task) == "1 + 1 = 2.\nThe answer is \\boxed{2}."
    assert boxed_solution(MathTask(id="b", question="1+1?", answer="2")) is None


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    train, heldout = gsm_symbolic_splits(8, 4, seed=1)
    extra = MathTask(id="x", question="Ünïcode?", answer="3.5", source="mine.jsonl")
    tasks = train + heldout + [extra]
    path = tmp_path / "sub" / "tasks.jsonl"
    write_math_tasks(path, tasks)
    assert read_math_tasks(path) == tasks
    assert read_math_tasks(path, limit=3) == tasks[:3]


def test_read_fills_defaults_and_stringifies_numbers(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    rows = [{"question": "A?", "answer": 560}, {"question": "B?", "answer": 2.0, "id": 9}]
    path.write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n", encoding="utf-8")
    first, second = read_math_tasks(path)
    assert first == MathTask(id="plain.jsonl:1", question="A?", answer="560", source="plain.jsonl")
    assert (second.id, second.answer, second.solution) == ("9", "2", None)


@pytest.mark.parametrize(
    "line",
    [
        "{not json",
        "[1, 2]",
        '{"answer": "1"}',
        '{"question": "  ", "answer": "1"}',
        '{"question": "Q?"}',
        '{"question": "Q?", "answer": ""}',
        '{"question": "Q?", "answer": true}',
        '{"question": "Q?", "answer": "1", "solution": 5}',
        '{"question": "Q?", "answer": "1", "template": "t1"}',
        '{"question": "Q0", "answer": "1", "id": "a"}',
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = '{"question": "Q0", "answer": "1", "id": "a"}'
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:3\b"):
        read_math_tasks(path)


def test_missing_empty_file_and_bad_limit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        read_math_tasks(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="no tasks"):
        read_math_tasks(empty)
    with pytest.raises(ValueError, match="limit"):
        read_math_tasks(empty, limit=0)


# ---------------------------------------------------------------------------- factual tasks


def test_math_task_is_the_task_type_with_math_defaults() -> None:
    assert MathTask is Task
    task = Task(id="a", question="1+1?", answer="2")
    assert (task.domain, task.evidence) == ("math", None)


def test_fanoutqa_tasks_are_answered_by_their_corpus_article() -> None:
    tasks = fanoutqa_tasks()
    assert len(tasks) > 50
    articles = {doc["title"]: doc["text"] for doc in wiki_summaries()}
    for task in tasks:
        assert task.id.startswith("fanoutqa/")
        assert (task.domain, task.source, task.solution, task.template) == (
            "factual",
            "fanoutqa",
            None,
            None,
        )
        assert task.evidence in articles, task
        assert contains_answer(articles[task.evidence], task.answer), task
    assert len({task.id for task in tasks}) == len(tasks)
    assert len({task.question.lower() for task in tasks}) == len(tasks)
    japan = next(t for t in tasks if t.question == "What is the capital city of Japan?")
    assert (japan.answer, japan.evidence) == ("Tokyo", "Japan")
    assert fanoutqa_tasks() == tasks


def test_factual_splits_are_disjoint_by_task_and_article() -> None:
    total = len(fanoutqa_tasks())
    train, heldout = factual_splits(total // 2, 15, seed=3)
    assert (len(train), len(heldout)) == (total // 2, 15)
    assert not {t.id for t in train} & {t.id for t in heldout}
    assert not {t.evidence.lower() for t in train} & {t.evidence.lower() for t in heldout}
    assert all(t.domain == "factual" for t in train + heldout)


def test_factual_splits_are_deterministic_and_depend_on_the_seed() -> None:
    first = factual_splits(30, 10, seed=1)
    assert factual_splits(30, 10, seed=1) == first
    assert factual_splits(30, 10, seed=2) != first
    train, heldout = factual_splits(5, 0)
    assert len(train) == 5 and heldout == []


def test_factual_splits_refuse_more_tasks_than_there_are() -> None:
    total = len(fanoutqa_tasks())
    with pytest.raises(ValueError, match=rf"only {total} are available"):
        factual_splits(total, 1)
    with pytest.raises(ValueError, match="train"):
        factual_splits(0, 1)
    with pytest.raises(ValueError, match="heldout"):
        factual_splits(1, -1)


def test_missing_fanoutqa_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = retrieval_module.importlib.util.find_spec
    monkeypatch.setattr(
        retrieval_module.importlib.util,
        "find_spec",
        lambda name: None if name == "fanoutqa" else real(name),
    )
    with pytest.raises(CorpusUnavailable, match="pip install --no-deps fanoutqa"):
        fanoutqa_tasks()


def test_domain_and_evidence_round_trip(tmp_path: Path) -> None:
    factual = Task(
        id="f", question="Capital of Japan?", answer="Tokyo", domain="factual", evidence="Japan"
    )
    math_task = MathTask(id="m", question="1+1?", answer="2", source="mine.jsonl")
    path = tmp_path / "mixed.jsonl"
    write_math_tasks(path, [factual, math_task])
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert (rows[0]["domain"], rows[0]["evidence"]) == ("factual", "Japan")
    assert "domain" not in rows[1] and "evidence" not in rows[1]
    assert read_math_tasks(path) == [factual, math_task]


def test_read_defaults_to_math_and_takes_a_factual_row(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    rows = [
        {"question": "A?", "answer": 1},
        {"question": "Who?", "answer": "Tokyo", "domain": "factual"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    first, second = read_math_tasks(path)
    assert (first.domain, first.evidence) == ("math", None)
    assert (second.domain, second.evidence) == ("factual", None)


@pytest.mark.parametrize(
    "line",
    [
        '{"question": "Q?", "answer": "1", "domain": "trivia"}',
        '{"question": "Q?", "answer": "1", "domain": null}',
        '{"question": "Q?", "answer": "1", "evidence": 3}',
        '{"question": "Q?", "answer": "1", "evidence": " "}',
    ],
)
def test_bad_domain_or_evidence_names_file_and_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(f'{{"question": "Q0", "answer": "1"}}\n{line}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2\b"):
        read_math_tasks(path)
