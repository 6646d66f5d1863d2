"""The pure rules of Socratic co-evolution, one property per test."""

from __future__ import annotations

import math
import random

import pytest

from agents.eval.answers import check_solution
from agents.schemes.socratic.rules import (
    build_pairs,
    parse_json_object,
    parse_judge,
    parse_problem,
    pick_batch,
    utility,
    zone_of,
)

# ---------------------------------------------------------------------------- zones


@pytest.mark.parametrize(
    ("success", "zone"),
    [
        (None, "too_hard"),
        (0.0, "too_hard"),
        (1e-9, "learning"),
        (0.25, "learning"),
        (0.5, "learning"),
        (0.999, "learning"),
        (1.0, "mastered"),
    ],
)
def test_zone_boundaries(success: float | None, zone: str) -> None:
    assert zone_of(success) == zone


# ---------------------------------------------------------------------------- utility


def test_utility_peaks_at_one_at_half_success() -> None:
    assert utility(0.5) == 1.0
    assert all(utility(s / 20) < 1.0 for s in range(21) if s != 10)


@pytest.mark.parametrize("delta", [0.05, 0.1, 0.25, 0.5])
def test_utility_is_symmetric_around_the_center(delta: float) -> None:
    assert utility(0.5 - delta) == pytest.approx(utility(0.5 + delta), rel=1e-12)


def test_utility_values_follow_the_gaussian() -> None:
    # exp(-0.5 * (0.2 / 0.2)^2): one sigma away.
    assert utility(0.3, sigma=0.2) == pytest.approx(0.6065306597126334, rel=1e-12)
    assert utility(0.7, sigma=0.2) == pytest.approx(math.exp(-0.5), rel=1e-12)
    # Two sigmas (s = 0.1) and the extremes (2.5 sigmas).
    assert utility(0.1) == pytest.approx(math.exp(-2.0), rel=1e-12)
    assert utility(0.0) == pytest.approx(math.exp(-3.125), rel=1e-12)
    assert utility(1.0) == pytest.approx(0.043936933623407420, rel=1e-12)
    # A wider sigma and another center.
    assert utility(0.3, sigma=0.4) == pytest.approx(math.exp(-0.125), rel=1e-12)
    assert utility(0.8, center=0.8) == 1.0


# ---------------------------------------------------------------------------- pairs


def test_build_pairs_takes_every_combination_in_order() -> None:
    pairs = build_pairs(["c1", "c2"], ["i1", "i2", "i3"], "ref", limit=16)
    assert pairs == [
        ("c1", "i1", "sampled"),
        ("c1", "i2", "sampled"),
        ("c1", "i3", "sampled"),
        ("c2", "i1", "sampled"),
        ("c2", "i2", "sampled"),
        ("c2", "i3", "sampled"),
    ]


def test_build_pairs_stops_at_the_limit() -> None:
    pairs = build_pairs(["c1", "c2"], ["i1", "i2", "i3"], "ref", limit=4)
    assert pairs == [
        ("c1", "i1", "sampled"),
        ("c1", "i2", "sampled"),
        ("c1", "i3", "sampled"),
        ("c2", "i1", "sampled"),
    ]
    assert len(build_pairs([], ["i1", "i2", "i3"], "ref", limit=2)) == 2


def test_build_pairs_reference_wins_when_no_sample_is_correct() -> None:
    assert build_pairs([], ["i1", "i2"], "ref", limit=16) == [
        ("ref", "i1", "reference"),
        ("ref", "i2", "reference"),
    ]


def test_build_pairs_needs_an_incorrect_sample() -> None:
    assert build_pairs(["c1", "c2"], [], "ref", limit=16) == []
    assert build_pairs([], [], "ref", limit=16) == []


def test_build_pairs_nothing_without_reference_or_correct_sample() -> None:
    assert build_pairs([], ["i1", "i2"], None, limit=16) == []
    assert build_pairs([], ["i1", "i2"], "", limit=16) == []


# ---------------------------------------------------------------------------- rule verdicts


def test_rule_verdict_boxed_match() -> None:
    assert check_solution("3 + 4 = 7. The answer is \\boxed{7}.", "7") is True
    assert check_solution("\\boxed{1,200}", "1200") is True
    assert check_solution("\\boxed{0.5}", "1/2") is True


def test_rule_verdict_boxed_mismatch() -> None:
    assert check_solution("The answer is \\boxed{8}.", "7") is False


def test_rule_verdict_without_a_number_is_undecided() -> None:
    assert check_solution("I am not sure.", "7") is None
    assert check_solution("", "7") is None


def test_rule_verdict_number_against_non_number_is_undecided() -> None:
    assert check_solution("So \\boxed{x = 5}.", "5") is None
    assert check_solution("\\boxed{5}", "x = 5") is None


def test_rule_verdict_compares_non_numbers_as_text() -> None:
    assert check_solution("\\boxed{Yes}", "yes") is True
    assert check_solution("\\boxed{no}", "yes") is False


# ---------------------------------------------------------------------------- judge replies


def test_parse_judge_plain_json() -> None:
    assert parse_judge('{"correct": true, "analysis": "fine"}') == (True, "fine")
    assert parse_judge('{"correct": false}') == (False, "")


def test_parse_judge_fenced_json() -> None:
    reply = 'Here you go:\n```json\n{"correct": false, "analysis": "sign error"}\n```'
    assert parse_judge(reply) == (False, "sign error")


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("False", False), (" TRUE ", True)]
)
def test_parse_judge_accepts_boolean_strings(value: str, expected: bool) -> None:
    assert parse_judge(f'{{"correct": "{value}", "analysis": "a"}}') == (expected, "a")


@pytest.mark.parametrize(
    "reply",
    [
        '{"analysis": "no verdict"}',
        '{"correct": "maybe"}',
        '{"correct": 1}',
        "I think it is wrong",
        "{not json}",
        "",
        '["correct", true]',
    ],
)
def test_parse_judge_malformed_is_none(reply: str) -> None:
    assert parse_judge(reply) is None


def test_parse_judge_ignores_text_after_the_object() -> None:
    reply = '{"correct": true, "analysis": "fine"}\nThe student wrote \\boxed{5}.'
    assert parse_judge(reply) == (True, "fine")


# ---------------------------------------------------------------------------- problems


def test_parse_problem_all_fields() -> None:
    reply = '{"question": " What is 5 + 7? ", "solution": "5 + 7 = 12.", "answer": 12}'
    assert parse_problem(reply) == {
        "question": "What is 5 + 7?",
        "solution": "5 + 7 = 12.",
        "answer": "12",
    }


def test_parse_problem_escaped_latex() -> None:
    reply = '{"question": "What is 5 + 7?", "solution": "So \\\\boxed{12}.", "answer": "12"}'
    assert parse_problem(reply) == {
        "question": "What is 5 + 7?",
        "solution": "So \\boxed{12}.",
        "answer": "12",
    }


def test_parse_problem_raw_latex_backslashes() -> None:
    # Written as models write it: one backslash before boxed/frac inside the JSON string.
    reply = (
        '{"question": "Half of 24 apples?", '
        '"solution": "Half is \\frac{24}{2}, so the answer is \\boxed{12}."}'
    )
    assert "\\boxed" in reply and "\\\\" not in reply
    assert parse_problem(reply) == {
        "question": "Half of 24 apples?",
        "solution": "Half is \\frac{24}{2}, so the answer is \\boxed{12}.",
        "answer": "12",
    }


def test_parse_problem_raw_latex_mixed_with_json_escapes() -> None:
    # Escaped pairs stay: a JSON newline, a \u escape and an already doubled backslash.
    reply = '{"question": "What is 5 + 7?", "solution": "5 + 7\\n= 12 \\u00e9 \\\\boxed{12}"}'
    assert parse_problem(reply) == {
        "question": "What is 5 + 7?",
        "solution": "5 + 7\n= 12 \u00e9 \\boxed{12}",
        "answer": "12",
    }


def test_parse_problem_raw_latex_command_starting_with_u() -> None:
    reply = (
        '{"question": "What is 5 + 7?", '
        '"solution": "The total is \\underline{12}, so the answer is \\boxed{12}."}'
    )
    assert parse_problem(reply) == {
        "question": "What is 5 + 7?",
        "solution": "The total is \\underline{12}, so the answer is \\boxed{12}.",
        "answer": "12",
    }


def test_parse_problem_raw_latex_with_a_non_escape_letter() -> None:
    # "\(" is no JSON escape at all: kept as a literal backslash.
    reply = '{"question": "What is 5 + 7?", "solution": "So \\( x \\) is \\boxed{12}."}'
    assert parse_problem(reply) == {
        "question": "What is 5 + 7?",
        "solution": "So \\( x \\) is \\boxed{12}.",
        "answer": "12",
    }


def test_parse_problem_enhanced_question_key() -> None:
    reply = '{"enhanced_question": "What is 6 + 9?", "solution": "15", "answer": "15"}'
    assert parse_problem(reply) == {
        "question": "What is 6 + 9?",
        "solution": "15",
        "answer": "15",
    }


def test_parse_problem_answer_from_the_solution() -> None:
    reply = '```json\n{"question": "What is 6 + 9?", "solution": "6 + 9 = 15. #### 15"}\n```'
    assert parse_problem(reply) == {
        "question": "What is 6 + 9?",
        "solution": "6 + 9 = 15. #### 15",
        "answer": "15",
    }


@pytest.mark.parametrize(
    "reply",
    [
        '{"solution": "The answer is 4.", "answer": "4"}',
        '{"question": "   ", "answer": "4"}',
        '{"question": ["What?"], "answer": "4"}',
        '{"question": "What is 2 + 2?"}',
        '{"question": "What is 2 + 2?", "solution": "", "answer": ""}',
        '{"question": "What is 2 + 2?", "solution": "I do not know."}',
        "not json at all",
    ],
)
def test_parse_problem_malformed_is_none(reply: str) -> None:
    assert parse_problem(reply) is None


def test_parse_json_object_only_returns_objects() -> None:
    assert parse_json_object('{"a": [1, 2]}') == {"a": [1, 2]}
    assert parse_json_object("[1, 2]") is None
    assert parse_json_object("} {") is None


# ---------------------------------------------------------------------------- batches


def test_pick_batch_replay_share() -> None:
    fresh, older = list(range(100, 120)), list(range(10))
    take_fresh, take_old = pick_batch(fresh, older, 8, 0.25, random.Random(0))
    assert take_fresh == [100, 101, 102, 103, 104, 105]
    assert len(take_old) == 2 and set(take_old) <= set(older)


def test_pick_batch_without_replay_takes_only_fresh() -> None:
    take_fresh, take_old = pick_batch(
        list(range(100, 120)), list(range(10)), 8, 0.0, random.Random(0)
    )
    assert take_fresh == list(range(100, 108)) and take_old == []


def test_pick_batch_fills_with_older_when_fresh_is_short() -> None:
    take_fresh, take_old = pick_batch([100, 101], list(range(10)), 8, 0.25, random.Random(0))
    assert take_fresh == [100, 101]
    assert len(take_old) == 6 and set(take_old) <= set(range(10))


def test_pick_batch_fills_with_fresh_when_older_is_short() -> None:
    take_fresh, take_old = pick_batch(list(range(100, 120)), [1], 8, 0.5, random.Random(0))
    assert take_fresh == list(range(100, 107)) and take_old == [1]


def test_pick_batch_only_older() -> None:
    take_fresh, take_old = pick_batch([], list(range(10)), 4, 0.25, random.Random(0))
    assert take_fresh == [] and len(take_old) == 4


def test_pick_batch_both_short_takes_everything() -> None:
    take_fresh, take_old = pick_batch([100], [1, 2], 8, 0.5, random.Random(0))
    assert take_fresh == [100] and sorted(take_old) == [1, 2]


def test_pick_batch_is_deterministic_for_a_seed() -> None:
    fresh, older = list(range(100, 103)), list(range(50))
    first = pick_batch(fresh, older, 10, 0.5, random.Random("run-select-2"))
    again = pick_batch(fresh, older, 10, 0.5, random.Random("run-select-2"))
    other = pick_batch(fresh, older, 10, 0.5, random.Random("run-select-3"))
    assert first == again
    assert first[1] != other[1]  # 7 of 50: two seeds agreeing would be a broken rng


@pytest.mark.parametrize("seed", range(20))
def test_pick_batch_has_no_duplicates(seed: int) -> None:
    rng = random.Random(seed)
    fresh = rng.sample(range(100, 200), rng.randint(0, 12))
    older = rng.sample(range(100), rng.randint(0, 12))
    size, replay = rng.randint(1, 16), rng.choice([0.0, 0.25, 0.5, 0.75])
    take_fresh, take_old = pick_batch(fresh, older, size, replay, rng)
    batch = take_fresh + take_old
    assert len(batch) == len(set(batch)) == min(size, len(fresh) + len(older))
    assert set(take_fresh) <= set(fresh) and set(take_old) <= set(older)
