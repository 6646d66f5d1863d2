"""Intervals and paired tests of held-out accuracy (agents.eval.stats)."""

from __future__ import annotations

import pytest

from agents.eval.stats import accuracy_estimate, compare, difference_spread, samples_for_gain


def test_all_zero_scores_get_a_wilson_interval_that_is_not_a_point() -> None:
    estimate = accuracy_estimate([0.0] * 24, samples=2)
    assert estimate.method == "wilson"
    assert estimate.value == 0.0 and estimate.low == 0.0
    # 0 of 48 samples: the Wilson upper bound is about 0.074, far from 0.
    assert 0.06 < estimate.high < 0.09
    assert "95% CI 0.000–0.07" in estimate.text()


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_questions() -> None:
    small = accuracy_estimate([0.0, 0.5, 1.0, 0.25] * 5, samples=4)
    large = accuracy_estimate([0.0, 0.5, 1.0, 0.25] * 50, samples=4)
    for estimate in (small, large):
        assert estimate.method == "bootstrap"
        assert estimate.low < estimate.value < estimate.high
        assert estimate.value == pytest.approx(0.4375)
    assert large.high - large.low < small.high - small.low


def test_bootstrap_is_reproducible_for_a_seed() -> None:
    scores = [0.0, 1.0, 0.5, 0.0, 1.0, 0.25, 0.75]
    assert accuracy_estimate(scores, 4, seed=3) == accuracy_estimate(scores, 4, seed=3)


def test_binary_paired_gain_uses_mcnemar_and_is_significant() -> None:
    before = {i: 0.0 for i in range(100)}
    after = {i: 1.0 if i < 15 else 0.0 for i in range(100)}
    before[60] = 1.0  # one question got worse
    result = compare(before, after)
    assert result.test == "McNemar exact"
    assert (result.better, result.worse, result.n) == (15, 1, 100)
    assert result.difference == pytest.approx(0.14)
    assert result.significant and result.low > 0
    # Exact two-sided binomial test of 15 vs 1 discordant pairs.
    assert result.p_value == pytest.approx(0.000518798828125)


def test_fractional_scores_use_a_sign_flip_permutation_test() -> None:
    before = {i: 0.5 for i in range(30)}
    after = {i: 0.5 + (0.25 if i % 2 else -0.25) for i in range(30)}
    result = compare(before, after, samples=4)
    assert result.test == "sign-flip permutation"
    assert result.difference == pytest.approx(0.0)
    assert not result.significant and result.p_value > 0.5


def test_no_change_is_p_one_with_a_zero_interval() -> None:
    scores = {i: 0.25 for i in range(10)}
    result = compare(scores, dict(scores), samples=4)
    assert (result.difference, result.low, result.high, result.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not result.significant


def test_comparison_is_over_shared_questions_only() -> None:
    result = compare({"a": 0.0, "b": 0.0, "c": 1.0}, {"b": 1.0, "c": 1.0, "d": 0.0})
    assert result.n == 2 and result.better == 1


def test_bad_inputs_are_one_clear_error() -> None:
    with pytest.raises(ValueError, match="share no question"):
        compare({"a": 1.0}, {"b": 1.0})
    with pytest.raises(ValueError, match="between 0 and 1"):
        accuracy_estimate([1.5])
    with pytest.raises(ValueError, match="no questions"):
        accuracy_estimate([])


def test_sample_size_for_a_gain() -> None:
    # 1.96 + 0.84 = 2.80; (2.80 * 0.3 / 0.05)^2 = 282.5 -> 283 questions.
    assert samples_for_gain(0.05, 0.3) == 283
    assert samples_for_gain(0.0, 0.3) is None
    assert difference_spread({1: 0.0, 2: 1.0}, {1: 1.0, 2: 1.0}) == pytest.approx(0.7071, abs=1e-4)
