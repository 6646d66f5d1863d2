"""Rule-based answer extraction and comparison for math-style and short factual answers.

``extract_answer`` looks, in order, for the last ``\\boxed{...}``, a "the answer is ..." phrase,
a GSM8K-style ``#### ...`` line, and finally the last number in the text. ``answers_match``
compares numerically when both sides parse as numbers (fractions, percentages, thousands
separators, LaTeX ``\\frac``), as normalised strings when neither does. ``None`` means the rule
could not decide (no answer, or a number against a non-number), which is when a scheme may fall
back to a judge model.

Factual answers (``check_answer(..., domain="factual")``) go through ``factual_match``: SQuAD-style
normalisation (``normalise_answer``), numeric comparison when both sides are numbers, and a short
prediction that contains the reference as whole words.
"""

from __future__ import annotations

import math
import re
import unicodedata
from fractions import Fraction

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+"
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*[:\s]*\$?\s*([^\n]+)", re.I)
_HASHES = re.compile(r"####\s*([^\n]+)")


def _boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, honouring nested braces."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None


def extract_answer(text: str) -> str | None:
    """The final answer stated in a solution, or None when there is none."""
    boxed = _boxed(text)
    if boxed is not None:
        return boxed.strip()
    for pattern in (_ANSWER_IS, _HASHES):
        matches = pattern.findall(text)
        if matches:
            return matches[-1].strip().rstrip(".").strip()
    numbers = re.findall(_NUMBER, text)
    return numbers[-1] if numbers else None


def to_number(text: str) -> float | None:
    """Parse ``1,234``, ``$5``, ``50%``, ``3/4``, ``\\frac{3}{4}``, ``-2.50`` → float."""
    s = text.strip().strip("$").strip()
    s = re.sub(r"\\(?:text|mathrm)\{[^}]*\}", "", s)  # units in LaTeX text
    s = s.replace("\\!", "").replace("\\,", "").replace("{,}", "")
    frac = re.fullmatch(r"-?\\d?frac\{(-?[\d.]+)\}\{(-?[\d.]+)\}", s)
    if frac:
        sign = -1 if s.startswith("-") else 1
        num, den = float(frac.group(1)), float(frac.group(2))
        return sign * num / den if den else None
    s = s.replace("\\%", "%")
    # A number, optionally after a currency sign/word and before a unit word or percent sign.
    match = re.fullmatch(
        r"(?:[A-Za-z$€£]+\s*)?(-?[\d,]*\.?\d+(?:/\d+)?)\s*(?:%|[A-Za-z][A-Za-z ]*)?", s
    )
    if not match:
        return None
    s = match.group(1).replace(",", "")
    try:
        return float(Fraction(s)) if "/" in s else float(s)
    except (ValueError, ZeroDivisionError):
        return None


def normalise_text(text: str) -> str:
    """Math answer text for an exact compare: lowercase, no ``$``/``\\text{}``, no whitespace."""
    s = text.lower().strip().strip("$").strip()
    s = re.sub(r"\\text\{([^}]*)\}", r"\1", s)
    s = re.sub(r"[\s.]+$", "", s)
    return re.sub(r"\s+", "", s)  # "x + 1" and "x+1" are the same answer


def answers_match(predicted: str | None, reference: str) -> bool | None:
    """True/False when the rule decides; None when it cannot: no answer at all, or a number
    compared with a non-number (``x = 5`` against ``5`` is for a judge, not a string compare)."""
    if predicted is None:
        return None
    a, b = to_number(predicted), to_number(reference)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if (a is None) != (b is None):
        return None
    return normalise_text(predicted) == normalise_text(reference)


_ARTICLES = frozenset({"a", "an", "the"})
# Dashes and slashes separate words ("1950–2000", "AC/DC"); other punctuation is dropped in place
# ("1,636" -> "1636", "U.S." -> "us").
_WORD_BREAKS = frozenset("/\\")
# A predicted factual answer may be at most this many times the reference's words, plus the slack.
_MAX_WORDS_FACTOR, _MAX_WORDS_SLACK = 3, 5


def normalise_answer(text: str) -> str:
    """Factual answer text: lowercase, no accents, punctuation, articles or extra whitespace.

    Unlike :func:`normalise_text` (math answers, where ``x + 1`` is ``x+1``), words stay apart so
    that one answer can be looked for inside another. ``"The Brasília!"`` -> ``"brasilia"``.
    """
    decomposed = unicodedata.normalize("NFKD", text.lower())
    chars = []
    for char in decomposed:
        category = unicodedata.category(char)
        if category == "Mn":
            continue
        if category == "Pd" or char in _WORD_BREAKS or char.isspace():
            chars.append(" ")
        elif category[0] not in "PS":
            chars.append(char)
    return " ".join(word for word in "".join(chars).split() if word not in _ARTICLES)


def _contains_words(text: str, words: str) -> bool:
    """Whether normalised ``words`` occur in normalised ``text`` as whole, contiguous words."""
    return bool(words) and f" {words} " in f" {text} "


def contains_answer(text: str, answer: str) -> bool:
    """Whether ``answer`` occurs in ``text`` as whole words, both compared normalised."""
    return _contains_words(normalise_answer(text), normalise_answer(answer))


def factual_match(predicted: str | None, reference: str) -> bool | None:
    """Whether a short factual answer matches the reference; None when there is no answer.

    True when the normalised texts are equal, when both parse as the same number
    (``"1,636"`` and ``"1636"``, ``"8,848.86 m"`` and ``"8848.86"``; two different numbers are
    False), or when the prediction contains the reference as whole words and is at most
    ``3 * len(reference words) + 5`` words long (``"Tokyo, Japan"`` for ``"Tokyo"``).
    """
    if predicted is None:
        return None
    pred, ref = normalise_answer(predicted), normalise_answer(reference)
    if not pred:
        return None
    # Numbers first: normalising drops signs and decimal points ("-5" and "5" read the same).
    a, b = to_number(predicted), to_number(reference)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if pred == ref:
        return True
    ref_words = len(ref.split())
    short = len(pred.split()) <= _MAX_WORDS_FACTOR * ref_words + _MAX_WORDS_SLACK
    return short and _contains_words(pred, ref)


def check_answer(predicted: str | None, reference: str, domain: str = "math") -> bool | None:
    """Compare an extracted answer with the reference by the domain's rule.

    ``"math"`` uses :func:`answers_match`, ``"factual"`` uses :func:`factual_match`; None means
    the rule cannot decide.

    Raises:
        ValueError: For any other domain.
    """
    if domain == "math":
        return answers_match(predicted, reference)
    if domain == "factual":
        return factual_match(predicted, reference)
    raise ValueError(f"Unknown answer domain {domain!r}; expected 'math' or 'factual'.")


def check_solution(solution: str, reference: str) -> bool | None:
    """Whether a full solution text reaches the reference answer (None: the rule cannot tell)."""
    return answers_match(extract_answer(solution), reference)
