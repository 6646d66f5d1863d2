"""Rule-based answer extraction and comparison for math-style answers.

``extract_answer`` looks, in order, for the last ``\\boxed{...}``, a "the answer is ..." phrase,
a GSM8K-style ``#### ...`` line, and finally the last number in the text. ``answers_match``
compares numerically when both sides parse as numbers (fractions, percentages, thousands
separators, LaTeX ``\\frac``), as normalised strings when neither does. ``None`` means the rule
could not decide (no answer, or a number against a non-number), which is when a scheme may fall
back to a judge model.
"""

from __future__ import annotations

import math
import re
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


def check_solution(solution: str, reference: str) -> bool | None:
    """Whether a full solution text reaches the reference answer (None: the rule cannot tell)."""
    return answers_match(extract_answer(solution), reference)
