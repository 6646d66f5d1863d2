"""Held-out evaluation: accuracy of a model on {question, answer} items, mean over samples."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.eval.answers import check_solution, extract_answer
from agents.eval.stats import Estimate, accuracy_estimate
from agents.models.base import ChatRequest, Engine


@dataclass
class EvalItem:
    question: str
    answer: str
    id: str | None = None


@dataclass
class EvalReport:
    """Accuracy = mean over items of the fraction of correct samples."""

    accuracy: float
    num_items: int
    samples: int
    per_item: list[dict[str, Any]] = field(default_factory=list)

    @property
    def estimate(self) -> Estimate:
        """The accuracy with its 95% interval (bootstrap over items, or Wilson)."""
        return accuracy_estimate([row["score"] for row in self.per_item], self.samples)

    def summary(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "accuracy": self.accuracy,
            "items": self.num_items,
            "samples": self.samples,
        }
        if self.per_item:
            found["interval"] = self.estimate.as_dict()
            found["_scores"] = {
                str(row["id"] if row["id"] is not None else i): row["score"]
                for i, row in enumerate(self.per_item)
            }
        return found


def read_eval_items(path: Path, limit: int | None = None) -> list[EvalItem]:
    """JSONL with ``question`` and ``answer`` on every line (``id`` optional)."""
    if not path.exists():
        raise FileNotFoundError(f"evaluation data {path} does not exist")
    items = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append(EvalItem(str(row["question"]), str(row["answer"]), row.get("id")))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(
                f"{path}:{number} must be a JSON object with question and answer"
            ) from None
        if limit and len(items) >= limit:
            break
    if not items:
        raise ValueError(f"{path} holds no evaluation items")
    return items


def evaluate(
    engine: Engine,
    items: list[EvalItem],
    *,
    system_prompt: str,
    samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_tokens: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> EvalReport:
    """Ask the engine every question ``samples`` times and check the answers by rule."""
    requests = [
        ChatRequest(
            messages=[
                {"role": "system", "content": system_prompt},
                {"role": "user", "content": item.question},
            ],
            n=samples,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            seed=seed,
        )
        for item in items
    ]
    results = engine.generate(requests, progress=progress)
    per_item = []
    for item, request, result in zip(items, requests, results, strict=True):
        verdicts = [check_solution(c.text, item.answer) is True for c in result.completions]
        per_item.append(
            {
                "id": item.id,
                "question": item.question,
                "answer": item.answer,
                "messages": list(request.messages),
                "completions": result.texts,
                "predicted": [extract_answer(t) for t in result.texts],
                "correct": verdicts,
                "score": sum(verdicts) / len(verdicts),
            }
        )
    accuracy = sum(row["score"] for row in per_item) / len(per_item)
    return EvalReport(accuracy=accuracy, num_items=len(items), samples=samples, per_item=per_item)
