"""Answer checking and held-out evaluation."""

from agents.eval.answers import answers_match, check_solution, extract_answer
from agents.eval.heldout import EvalItem, EvalReport, evaluate, read_eval_items

__all__ = [
    "EvalItem",
    "EvalReport",
    "answers_match",
    "check_solution",
    "evaluate",
    "extract_answer",
    "read_eval_items",
]
