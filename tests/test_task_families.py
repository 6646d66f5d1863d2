"""Task families and mixtures: disjoint pools, the datasets' own scorers, clear errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from agents.task_families import (
    FamilySpec,
    apportion,
    check_answer_text,
    check_family,
    family_pools,
    load_pools,
)

EASY_SUM = FamilySpec("chain_sum", {"min_terms": 2, "max_terms": 2, "max_digits": 1})
EASY_EQ = FamilySpec(
    "simple_equations",
    {"min_terms": 2, "max_terms": 2, "max_value": 9, "operators": ["+"], "operators_weights": [1]},
    weight=2,
)


def test_apportion_sums_to_the_total_by_weight() -> None:
    assert apportion(10, [1, 1]) == [5, 5]
    assert apportion(10, [1, 2]) == [3, 7]
    assert sum(apportion(7, [1, 1, 1])) == 7
    assert apportion(0, [1, 2]) == [0, 0]


def test_mixture_pools_are_disjoint_weighted_and_deterministic() -> None:
    transfer = [FamilySpec("basic_arithmetic", {"min_terms": 2, "max_terms": 2, "max_digits": 1})]
    args = dict(train=30, warmup=12, heldout=24, transfer=transfer, transfer_heldout=6, seed=1)
    pools = load_pools([EASY_SUM, EASY_EQ, FamilySpec("gsm_symbolic")], **args)
    assert (len(pools.train), len(pools.warmup), len(pools.heldout), len(pools.transfer)) == (
        30,
        12,
        24,
        6,
    )
    assert Counter(t.family for t in pools.train) == {
        "simple_equations": 15,
        "chain_sum": 8,
        "gsm_symbolic": 7,
    }
    assert {t.family for t in pools.transfer} == {"basic_arithmetic"}
    questions = [
        t.question for p in (pools.train, pools.warmup, pools.heldout, pools.transfer) for t in p
    ]
    assert len(questions) == len(set(questions))
    # Generated held-out items come from their own generator seed, never the training one.
    seeds = lambda tasks: {t.check["seed"] for t in tasks if t.check and t.family != "gsm_symbolic"}  # noqa: E731
    assert not seeds(pools.heldout) & seeds(pools.train)
    assert not seeds(pools.heldout) & seeds(pools.warmup)
    # gsm_symbolic stays template-disjoint.
    gsm = lambda tasks: {t.template for t in tasks if t.family == "gsm_symbolic"}  # noqa: E731
    assert not gsm(pools.heldout) & gsm([*pools.train, *pools.warmup])
    again = load_pools([EASY_SUM, EASY_EQ, FamilySpec("gsm_symbolic")], **args)
    assert [t.id for t in again.train] == [t.id for t in pools.train]


def test_answers_are_checked_by_the_datasets_scorer() -> None:
    pools = family_pools(
        FamilySpec("number_sorting", {"min_numbers": 3, "max_numbers": 3}), {"heldout": 3}
    )
    task = pools["heldout"][0]
    assert task.check is not None
    assert check_answer_text(f"Sorted: \\boxed{{{task.answer}}}", task.answer, task.check) is True
    assert check_answer_text("The answer is \\boxed{[1, 2]}", task.answer, task.check) is False
    assert check_answer_text("I do not know", task.answer, task.check) is False
    gsm = family_pools(FamilySpec("gsm_symbolic"), {"heldout": 1})["heldout"][0]
    assert check_answer_text(f"so it is {gsm.answer}.0 in all", gsm.answer, gsm.check) is True


def test_a_file_family_holds_out_its_last_rows(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(
        "".join(json.dumps({"question": f"q{i}?", "answer": i}) + "\n" for i in range(10))
    )
    pools = family_pools(FamilySpec(str(path)), {"train": 4, "warmup": 2, "heldout": 3})
    assert [t.question for t in pools["heldout"]] == ["q7?", "q8?", "q9?"]
    assert [t.question for t in pools["train"]] == ["q0?", "q1?", "q2?", "q3?"]
    assert [t.question for t in pools["warmup"]] == ["q4?", "q5?"]
    assert {t.family for t in pools["train"]} == {"mine.jsonl"}
    assert check_answer_text("\\boxed{7}", "7", pools["heldout"][0].check) is True


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (FamilySpec("chain_su"), "not a reasoning-gym dataset (did you mean chain_sum"),
        (FamilySpec("chain_sum", {"min_terms": 0}), "bad settings for chain_sum"),
        (FamilySpec("simple_equations", {"operators": ["+"]}), "bad settings for simple_equations"),
        (FamilySpec("missing/file.jsonl"), "does not exist"),
        (FamilySpec("chain_sum", weight=0), "positive weight"),
    ],
)
def test_bad_families_are_one_clear_sentence(spec: FamilySpec, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        check_family(spec)


def test_too_few_distinct_questions_is_a_clear_error() -> None:
    tiny = FamilySpec("chain_sum", {"min_terms": 1, "max_terms": 1, "max_digits": 1})
    with pytest.raises(ValueError, match="only 10 distinct new questions"):
        load_pools([tiny], train=30)
    with pytest.raises(ValueError, match="appears twice"):
        load_pools([EASY_SUM], train=2, transfer=[EASY_SUM], transfer_heldout=2)
