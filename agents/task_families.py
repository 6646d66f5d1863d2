"""Task families and weighted mixtures of them: reasoning-gym generators, gsm_symbolic, JSONL.

A family is one source of questions with reference answers:

- any reasoning-gym dataset by name, with its difficulty settings as ``config``
  (``{"name": "chain_sum", "config": {"min_terms": 2, "max_terms": 2, "max_digits": 1}}``);
- ``gsm_symbolic``: word problems, split template-disjoint (see :mod:`agents.tasks`);
- a JSONL file of ``{question, answer}`` rows (``{"name": "data/mine.jsonl"}``).

:func:`load_pools` draws the pools a scheme needs — training candidates, a separate warm-up pool,
held-out items, and held-out items of *transfer* families the run never trains on — so that no
held-out item shares a generator seed (reasoning-gym) or a template (gsm_symbolic) with a
training or warm-up item, and no question text appears in two pools.

Answers of generated families are checked with the dataset's own scorer: every task carries a
``check`` descriptor (dataset, settings, generator seed, index) from which
:func:`check_answer_text` regenerates the entry and calls reasoning-gym's ``score_answer``.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field as PydanticField

from agents.config import StrictModel
from agents.eval.answers import check_solution, extract_answer
from agents.tasks import Task, gsm_symbolic_splits, read_math_tasks

GSM = "gsm_symbolic"
#: A reasoning-gym score at or above this is a correct answer (scorers give 0.01 for a wrong one).
CORRECT_SCORE = 0.999
# Generated datasets are indexed up to this size; items depend only on (seed, index).
_GENERATED_SIZE = 1 << 20


class Family(StrictModel):
    """One task family in a config: a reasoning-gym dataset with its settings, gsm_symbolic, or a
    JSONL file (the validated form of a :class:`FamilySpec`)."""

    name: str = PydanticField(
        description="reasoning-gym dataset name, 'gsm_symbolic' or a .jsonl path"
    )
    config: dict[str, Any] = PydanticField(
        default_factory=dict, description="the dataset's settings, e.g. {max_digits: 1}"
    )
    weight: float = PydanticField(
        1.0, gt=0, description="share of the mixture, relative to the others"
    )

    def spec(self) -> FamilySpec:
        """The :class:`FamilySpec` this entry names."""
        return FamilySpec(self.name, dict(self.config), self.weight)


@dataclass(frozen=True)
class FamilySpec:
    """One task family of a mixture: a reasoning-gym dataset, ``gsm_symbolic`` or a JSONL path.

    Attributes:
        name: reasoning-gym dataset name, ``"gsm_symbolic"``, or a path ending in ``.jsonl``.
        config: The dataset's settings (difficulty ranges); reasoning-gym names them.
        weight: Share of the mixture, relative to the other families' weights.
    """

    name: str
    config: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    weight: float = 1.0

    @property
    def is_file(self) -> bool:
        return self.name.endswith(".jsonl") or "/" in self.name

    @property
    def label(self) -> str:
        """The name a report shows: the dataset name, or the file's name."""
        return Path(self.name).name if self.is_file else self.name


@dataclass
class Pools:
    """The disjoint task pools of a run."""

    train: list[Task]  # seed candidates
    warmup: list[Task]
    heldout: list[Task]
    transfer: list[Task]  # held-out items of families never trained on


def check_family(spec: FamilySpec) -> None:
    """Raise ValueError with one clear sentence when ``spec`` cannot produce tasks."""
    if spec.weight <= 0:
        raise ValueError(f"family {spec.name!r} needs a positive weight, got {spec.weight}.")
    if spec.is_file:
        if not Path(spec.name).is_file():
            raise ValueError(f"Task file {spec.name} does not exist.")
        return
    if spec.name == GSM:
        return
    from reasoning_gym.factory import DATASETS

    if spec.name not in DATASETS:
        close = sorted(n for n in DATASETS if n[:3] == spec.name[:3])[:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"{spec.name!r} is not a reasoning-gym dataset{hint}.")
    try:
        _generator(spec.name, json.dumps(spec.config, sort_keys=True), 0)[0]
    except Exception as err:  # reasoning-gym validates settings with asserts and TypeErrors
        raise ValueError(f"bad settings for {spec.name}: {err or type(err).__name__}.") from None


@lru_cache(maxsize=64)
def _generator(name: str, config_json: str, seed: int) -> Any:
    import reasoning_gym

    return reasoning_gym.create_dataset(
        name, size=_GENERATED_SIZE, seed=seed, **json.loads(config_json)
    )


def _pool_seed(seed: int, name: str, pool: str) -> int:
    """A generator seed per (run seed, family, pool): pools never share a generator stream."""
    return zlib.crc32(f"{seed}/{name}/{pool}".encode()) & 0x7FFFFFFF


def _generated(spec: FamilySpec, pool: str, count: int, seed: int, avoid: set[str]) -> list[Task]:
    gen_seed = _pool_seed(seed, spec.name, pool)
    config_json = json.dumps(spec.config, sort_keys=True)
    dataset = _generator(spec.name, config_json, gen_seed)
    tasks: list[Task] = []
    # Easy settings have few distinct questions; stop looking well before the index space ends.
    for index in range(min(_GENERATED_SIZE, 200 * count + 1000)):
        if len(tasks) == count:
            break
        entry = dataset[index]
        question = entry["question"]
        if question in avoid:
            continue
        avoid.add(question)
        tasks.append(
            Task(
                id=f"{spec.name}/{pool}/s{gen_seed}/i{index}",
                question=question,
                answer=str(entry["answer"]),
                solution=(entry.get("metadata") or {}).get("answer_cot"),
                source=spec.name,
                family=spec.name,
                check={
                    "dataset": spec.name,
                    "config": spec.config,
                    "seed": gen_seed,
                    "index": index,
                },
            )
        )
    if len(tasks) < count:
        raise ValueError(
            f"{spec.name} with these settings has only {len(tasks)} distinct new questions for "
            f"the {pool} pool, not {count}; widen its difficulty settings or ask for fewer."
        )
    return tasks


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` by ``weights`` (largest remainder), so the parts sum to ``total``."""
    if total <= 0 or not weights:
        return [0] * len(weights)
    whole = sum(weights)
    exact = [total * w / whole for w in weights]
    parts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _gsm_pools(
    spec: FamilySpec, counts: dict[str, int], seed: int, heldout_share: float, avoid: set[str]
) -> dict[str, list[Task]]:
    train_side = counts["train"] + counts["warmup"]
    train, held = gsm_symbolic_splits(
        max(train_side, 1), counts["heldout"], seed=seed, heldout_share=heldout_share
    )
    train = [replace(t, family=GSM) for t in train if t.question not in avoid]
    held = [replace(t, family=GSM) for t in held if t.question not in avoid]
    if len(train) < train_side:
        raise ValueError("gsm_symbolic has too few distinct problems; ask for fewer.")
    avoid.update(t.question for t in [*train, *held])
    return {
        "train": train[: counts["train"]],
        "warmup": train[counts["train"] : train_side],
        "heldout": held,
    }


def _file_pools(spec: FamilySpec, counts: dict[str, int], avoid: set[str]) -> dict[str, list[Task]]:
    """A file has no generator: its last rows are held out (at most half of them), the first
    rows train, the next ones warm up. A short file gives smaller pools, never an overlap."""
    tasks = [replace(t, family=spec.label) for t in read_math_tasks(Path(spec.name))]
    tasks = [t for t in tasks if t.question not in avoid]
    held = min(counts["heldout"], len(tasks) // 2)
    if counts["heldout"] and held == 0:
        raise ValueError(f"{spec.name} needs at least 2 new rows to hold some out.")
    if not tasks[: len(tasks) - held] and counts["train"]:
        raise ValueError(f"{spec.name} has no rows left for training.")
    rest = tasks[: len(tasks) - held]
    pools = {
        "train": rest[: counts["train"]],
        "warmup": rest[counts["train"] : counts["train"] + counts["warmup"]],
        "heldout": tasks[len(tasks) - held :] if held else [],
    }
    avoid.update(t.question for pool in pools.values() for t in pool)
    return pools


def family_pools(
    spec: FamilySpec,
    counts: dict[str, int],
    *,
    seed: int = 0,
    heldout_share: float = 0.25,
    avoid: set[str] | None = None,
) -> dict[str, list[Task]]:
    """``{pool: tasks}`` of one family for ``counts`` like ``{"train": 40, "warmup": 20,
    "heldout": 50}``; questions in ``avoid`` (and each other's) are never reused."""
    check_family(spec)
    avoid = set() if avoid is None else avoid
    counts = {pool: counts.get(pool, 0) for pool in ("train", "warmup", "heldout")}
    if spec.is_file:
        return _file_pools(spec, counts, avoid)
    if spec.name == GSM:
        return _gsm_pools(spec, counts, seed, heldout_share, avoid)
    # Held-out first, from its own generator seed; train and warm-up avoid its questions.
    order = ("heldout", "train", "warmup")
    return {pool: _generated(spec, pool, counts[pool], seed, avoid) for pool in order}


def load_pools(
    families: Sequence[FamilySpec],
    *,
    train: int,
    warmup: int = 0,
    heldout: int = 0,
    transfer: Sequence[FamilySpec] = (),
    transfer_heldout: int = 0,
    heldout_share: float = 0.25,
    seed: int = 0,
) -> Pools:
    """Disjoint pools of a weighted mixture (see the module docstring).

    Each pool's size is split over the families by weight; the train pool is shuffled with
    ``random.Random(seed)`` so families interleave, the other pools keep family order.

    Raises:
        ValueError: An unknown dataset, bad settings, a missing file, or too few distinct items.
    """
    if not families:
        raise ValueError("a task mixture needs at least one family.")
    names = [f.name for f in [*families, *transfer]]
    if len(set(names)) != len(names):
        raise ValueError("a family appears twice in the mixture or in transfer; list it once.")
    avoid: set[str] = set()
    weights = [f.weight for f in families]
    share = {
        pool: apportion(total, weights)
        for pool, total in (("train", train), ("warmup", warmup), ("heldout", heldout))
    }
    pools = Pools([], [], [], [])
    for i, spec in enumerate(families):
        found = family_pools(
            spec,
            {pool: share[pool][i] for pool in share},
            seed=seed,
            heldout_share=heldout_share,
            avoid=avoid,
        )
        pools.train += found["train"]
        pools.warmup += found["warmup"]
        pools.heldout += found["heldout"]
    for spec, count in zip(
        transfer, apportion(transfer_heldout, [f.weight for f in transfer]), strict=True
    ):
        pools.transfer += family_pools(
            spec, {"heldout": count}, seed=seed, heldout_share=heldout_share, avoid=avoid
        )["heldout"]
    random.Random(seed).shuffle(pools.train)
    return pools


def check_answer_text(text: str, answer: str, check: dict[str, Any] | None = None) -> bool | None:
    """Whether a solution's final answer is right: the dataset's own scorer when the task has a
    ``check`` descriptor, else the rule of :func:`agents.eval.answers.check_solution`.

    With a scorer, a solution with no recognisable final answer is wrong (False), never None.
    """
    if not check:
        return check_solution(text, answer)
    scored = _scored(extract_answer(text), answer, check)
    return check_solution(text, answer) if scored is None else scored


def _scored(predicted: str | None, answer: str, check: dict[str, Any]) -> bool | None:
    """The dataset scorer's verdict on a final answer; None when this reasoning-gym version
    generates a different entry (then the caller's rule decides)."""
    dataset = _generator(
        check["dataset"], json.dumps(check["config"], sort_keys=True), int(check["seed"])
    )
    entry = dataset[int(check["index"])]
    if str(entry["answer"]) != str(answer):
        return None
    if predicted is None or not predicted.strip():
        return False
    try:
        return float(dataset.score_answer(predicted.strip(), entry)) >= CORRECT_SCORE
    except Exception:  # a scorer that cannot parse the prediction: wrong answer
        return False


def score_text(
    predicted: str | None, answer: str, check: dict[str, Any] | None = None, domain: str = "math"
) -> bool:
    """Whether a final answer (an agent's ``final_answer``, not a whole solution) is right:
    the dataset's own scorer when the task has a ``check`` descriptor, else
    :func:`agents.eval.answers.check_answer` for the task's domain."""
    from agents.eval.answers import check_answer

    if check:
        scored = _scored(predicted, answer, check)
        if scored is not None:
            return scored
    return check_answer(predicted, answer, domain) is True
