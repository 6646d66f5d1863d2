"""Where an agent-distillation run's tasks come from: math families, fanoutqa, JSONL files, and
the checks of the questions the teacher writes about long-tail corpus facts."""

from __future__ import annotations

import random
import re
from pathlib import Path

from agents.config import ConfigError
from agents.schemes.agent_distill.config import AgentDistillJob
from agents.task_families import Family, load_pools
from agents.tasks import Task, factual_splits, read_math_tasks
from tools.retrieval import CorpusUnavailable

#: The task source of questions the teacher writes about corpus articles.
CORPUS_FACTS = "corpus_facts"

_FACT_RE = re.compile(r"Question:\s*(?P<q>.+?)\s*\n+\s*Answer:\s*(?P<a>.+)", re.S | re.I)


def parse_fact(text: str, title: str, article: str, max_words: int) -> tuple[str, str] | str:
    """(question, answer) of a drafted fact question, or why it fails a check: the answer is a
    short span of the article, the question names the article's subject (a word of its title)
    and hides the answer."""
    found = _FACT_RE.search(text)
    if not found:
        return "unparsed"
    question = " ".join(found.group("q").split())
    answer = found.group("a").strip().splitlines()[0].strip().strip("\"'.` ")
    if not answer or not question.endswith("?"):
        return "unparsed"
    if len(answer.split()) > max_words:
        return "long_answer"
    if answer.lower() not in article.lower():
        return "not_in_article"
    if answer.lower() in question.lower():
        return "answer_in_question"
    # Retrieval needs a handle: a word of the title (not a short function word) in the question.
    asked = set(re.findall(r"\w+", question.lower()))
    if not any(w in asked for w in re.findall(r"\w+", title.lower()) if len(w) > 3 or w.isdigit()):
        return "no_subject"
    return question, answer


def fact_articles(config: AgentDistillJob, count: int, avoid: set[str]) -> list[dict[str, str]]:
    """``count`` seeded-random articles of the corpus long enough to ask about."""
    from tools.retrieval import wiki_summaries

    docs = [
        d
        for d in wiki_summaries(config.corpus.limit)
        if len(d["text"]) >= config.facts.min_article_chars and d["title"] not in avoid
    ]
    random.Random(config.seed + 17).shuffle(docs)
    return docs[:count]


def load_tasks(config: AgentDistillJob) -> tuple[list[Task], list[Task]]:
    """Training and held-out tasks of a config; a bad file or count is a :class:`ConfigError`.

    Built-in tasks are generated only for the side (training, held-out) no file replaces.
    """
    cfg = config.tasks
    math_n = 0 if cfg.data else cfg.math
    math_heldout_n = 0 if cfg.heldout_data else cfg.heldout_math
    fact_n = 0 if cfg.data else cfg.factual
    fact_heldout_n = 0 if cfg.heldout_data else cfg.heldout_factual
    try:
        math_train: list[Task] = []
        math_heldout: list[Task] = []
        if math_n or math_heldout_n:
            # Template-disjoint (gsm_symbolic) or generator-seed-disjoint (reasoning-gym) pools.
            families = [f.spec() for f in cfg.families] or [Family(name="gsm_symbolic").spec()]
            pools = load_pools(
                families,
                train=math_n,
                heldout=math_heldout_n,
                seed=config.seed,
                heldout_share=cfg.heldout_share,
            )
            math_train, math_heldout = pools.train, pools.heldout
        fact_train: list[Task] = []
        fact_heldout: list[Task] = []
        if fact_n or fact_heldout_n:
            fact_train, fact_heldout = factual_splits(
                max(fact_n, 1), fact_heldout_n, seed=config.seed
            )
        train = (
            read_math_tasks(Path(cfg.data))
            if cfg.data
            else math_train[:math_n] + fact_train[:fact_n]
        )
        heldout = (
            read_math_tasks(Path(cfg.heldout_data))
            if cfg.heldout_data
            else math_heldout + fact_heldout
        )
    except (ValueError, FileNotFoundError, CorpusUnavailable) as err:
        raise ConfigError(str(err)) from None
    if not train:
        raise ConfigError(
            "no training tasks: set tasks.math or tasks.factual above 0, or tasks.data"
        )
    if not heldout:
        raise ConfigError(
            "no held-out tasks: set tasks.heldout_math or tasks.heldout_factual above 0, "
            "or tasks.heldout_data"
        )
    return train, heldout
