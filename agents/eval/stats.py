"""Intervals and paired tests for held-out accuracy, shared by every scheme.

Accuracy is mean@k: each question's score is the fraction of its k samples that are correct, and
the accuracy is the mean over questions. Questions, not samples, are the unit of resampling,
because samples of one question are not independent.

- :func:`accuracy_estimate`: the mean with a 95% interval. A percentile bootstrap over questions
  (``scipy.stats.bootstrap``) in general; when every question scores the same (all 0 or all 1,
  where a bootstrap collapses to a point) the Wilson interval over all samples
  (``scipy.stats.binomtest``), which stays honest about how few samples a 0.000 rests on.
- :func:`compare`: before → after on the same questions: the mean difference with a paired
  bootstrap interval, and a p-value: McNemar's exact test (a binomial test on the discordant
  questions) when every score is 0 or 1, otherwise a paired sign-flip permutation test
  (``scipy.stats.permutation_test``).

scipy is the library: its bootstrap and tests are well kept and exact where it matters, which
hand-written resampling would not be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 9999


@dataclass(frozen=True)
class Estimate:
    """A mean with its interval: ``value`` in ``[low, high]`` at ``confidence``."""

    value: float
    low: float
    high: float
    n: int  # questions
    samples: int  # samples per question (k of mean@k); 0 when it varies
    method: str  # "bootstrap" or "wilson"
    confidence: float = CONFIDENCE

    def text(self, digits: int = 3) -> str:
        """``0.125 (95% CI 0.080–0.170, n=100)``."""
        pct = round(self.confidence * 100)
        return (
            f"{self.value:.{digits}f} ({pct}% CI {self.low:.{digits}f}–{self.high:.{digits}f}, "
            f"n={self.n})"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """After minus before on the same questions, with a paired interval and test."""

    before: Estimate
    after: Estimate
    difference: float
    low: float
    high: float
    p_value: float
    test: str  # "mcnemar-exact", "sign-flip permutation" or "none (no difference)"
    n: int
    better: int  # questions whose score rose
    worse: int  # questions whose score fell
    confidence: float = CONFIDENCE

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0

    def text(self, digits: int = 3) -> str:
        """``+0.080 (95% CI +0.030–+0.130), p=0.004 (McNemar exact), 12 better / 2 worse``."""
        pct = round(self.confidence * 100)
        return (
            f"{self.difference:+.{digits}f} ({pct}% CI {self.low:+.{digits}f}–"
            f"{self.high:+.{digits}f}), p={self.p_value:.3g} ({self.test}), "
            f"{self.better} better / {self.worse} worse of {self.n}"
        )

    def as_dict(self) -> dict[str, Any]:
        found = asdict(self)
        found["significant"] = self.significant
        return found


def _scores(values: Sequence[float] | Mapping[Any, float], what: str) -> np.ndarray:
    array = np.asarray(list(values.values() if isinstance(values, Mapping) else values), float)
    if array.size == 0:
        raise ValueError(f"{what}: no questions to estimate from.")
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
        raise ValueError(f"{what}: scores must be fractions between 0 and 1.")
    return array


def _binary(*arrays: np.ndarray) -> bool:
    return all(np.all((a == 0) | (a == 1)) for a in arrays)


def _bootstrap_mean(
    values: np.ndarray, confidence: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over questions (``rng`` advances)."""
    from scipy import stats

    result = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence,
        n_resamples=RESAMPLES,
        method="percentile",
        rng=rng,
    )
    low, high = result.confidence_interval
    return float(low), float(high)


def accuracy_estimate(
    scores: Sequence[float] | Mapping[Any, float],
    samples: int = 1,
    *,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """Mean@k over questions with its interval.

    Args:
        scores: Per-question scores (fraction of the ``samples`` answers that were correct), as a
            sequence or a mapping from question id.
        samples: k, the samples per question (used by the Wilson interval's sample count).
        confidence: Interval coverage.
        seed: Seed of the bootstrap resampling, so a report is reproducible.
    """
    from scipy import stats

    array = _scores(scores, "accuracy")
    value = float(array.mean())
    if np.all(array == array[0]):
        total = array.size * max(samples, 1)
        interval = stats.binomtest(round(value * total), total).proportion_ci(
            confidence_level=confidence, method="wilson"
        )
        return Estimate(
            value,
            float(interval.low),
            float(interval.high),
            array.size,
            samples,
            "wilson",
            confidence,
        )
    low, high = _bootstrap_mean(array, confidence, np.random.default_rng(seed))
    return Estimate(value, low, high, array.size, samples, "bootstrap", confidence)


def compare(
    before: Mapping[Any, float],
    after: Mapping[Any, float],
    samples: int = 1,
    *,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Comparison:
    """Paired before → after over the questions both were scored on.

    Raises:
        ValueError: When the two share no question, or a score is not a fraction.
    """
    from scipy import stats

    shared = [key for key in before if key in after]
    if not shared:
        raise ValueError("before and after share no question; a paired comparison needs some.")
    b = _scores([before[k] for k in shared], "before")
    a = _scores([after[k] for k in shared], "after")
    diff = a - b
    est_b = accuracy_estimate(b, samples, confidence=confidence, seed=seed)
    est_a = accuracy_estimate(a, samples, confidence=confidence, seed=seed)
    better, worse = int((diff > 0).sum()), int((diff < 0).sum())
    mean = float(diff.mean())
    if better + worse == 0:
        return Comparison(
            est_b,
            est_a,
            0.0,
            0.0,
            0.0,
            1.0,
            "none (no difference)",
            len(shared),
            0,
            0,
            confidence,
        )
    rng = np.random.default_rng(seed)
    low, high = _bootstrap_mean(diff, confidence, rng)
    if np.all(diff == diff[0]):  # every question moved by the same amount: no spread
        low = high = mean
    if _binary(a, b):
        p_value = float(stats.binomtest(better, better + worse, 0.5).pvalue)
        test = "McNemar exact"
    else:
        p_value = float(
            stats.permutation_test(
                (diff,),
                np.mean,
                permutation_type="samples",
                n_resamples=RESAMPLES,
                rng=rng,
            ).pvalue
        )
        test = "sign-flip permutation"
    return Comparison(
        est_b, est_a, mean, low, high, p_value, test, len(shared), better, worse, confidence
    )


def samples_for_gain(effect: float, spread: float, *, power: float = 0.8) -> int | None:
    """Questions a paired test needs to detect a mean gain ``effect`` at 5% (two-sided) with
    the given ``power``, when per-question differences have standard deviation ``spread``.

    Normal approximation: n = ((z_{0.975} + z_power) · spread / effect)². None when the effect
    is not positive (no scale shows a gain that is not there).
    """
    from scipy import stats

    if effect <= 0 or spread <= 0:
        return None
    z = stats.norm.ppf(0.975) + stats.norm.ppf(power)
    return int(np.ceil((z * spread / effect) ** 2))


def difference_spread(before: Mapping[Any, float], after: Mapping[Any, float]) -> float:
    """Standard deviation of per-question differences over the shared questions."""
    diff = np.asarray([after[k] - before[k] for k in before if k in after], float)
    return float(diff.std(ddof=1)) if diff.size > 1 else 0.0
