"""What the strategy-teaching stages share: the run's state, its runtime context (engines per
role, the domain, the strategy library) and the judge."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypedDict

from agents.episodes.dialogue import DialogueSettings, Guidance, Guide
from agents.models import load_engine
from agents.models.base import Message
from agents.models.cached import CachedEngine
from agents.schemes.base import RoleContext
from agents.schemes.strategy_teaching.config import StrategyTeachingJob
from agents.schemes.strategy_teaching.rules import prefer, retrieval_query
from strategies import TRAINING, USABLE, StrategyLibrary
from tools.service import ServiceDomain, ServiceTask, load_domain

#: Held-out agents: name → (model role, with strategies).
AGENTS: dict[str, tuple[str, bool]] = {
    "student": ("student", False),
    "student_strategies": ("student", True),
    "teacher": ("teacher", False),
    "transfer": ("transfer_student", False),
    "transfer_strategies": ("transfer_student", True),
}

#: Judged comparisons on held-out scenarios: name → (agent A, agent B); win rate is A's.
COMPARISONS: dict[str, tuple[str, str]] = {
    "strategies_vs_alone": ("student_strategies", "student"),
    "strategies_vs_teacher": ("student_strategies", "teacher"),
    "alone_vs_teacher": ("student", "teacher"),
    "transfer_strategies_vs_alone": ("transfer_strategies", "transfer"),
}


class TeachingState(TypedDict, total=False):
    round: int
    rounds: int
    train: list[list[str]]  # task ids of each round
    heldout: list[str]
    scenarios: list[int]  # this round's scenario ids


@dataclass
class TeachingContext(RoleContext):
    """Runtime context: config, store, engines per role, the domain and the strategy library."""

    config: StrategyTeachingJob
    domain_factory: Callable[[], ServiceDomain] | None = None
    library_factory: Callable[[], StrategyLibrary] | None = None
    _domain: ServiceDomain | None = None
    _library: StrategyLibrary | None = None

    def engine(self, role: str) -> CachedEngine:
        """The role's engine; roles naming the same model with the same options share one."""
        if role not in self.engines:
            spec = self.config.role_model(role)
            options = self.config.engine.get(role, {})
            shared = next(
                (
                    e.inner
                    for other, e in self.engines.items()
                    if self.config.role_model(other) == spec
                    and self.config.engine.get(other, {}) == options
                ),
                None,
            )
            if shared is None:
                shared = self.loader(role) if self.loader else load_engine(spec, **options)
            self.engines[role] = CachedEngine(shared, self.store, run_id=self.run_id, role=role)
        return self.engines[role]

    def close(self) -> None:
        closed: set[int] = set()
        for engine in self.engines.values():
            if id(engine.inner) not in closed:
                closed.add(id(engine.inner))
                engine.close()
        self.engines.clear()

    def domain(self) -> ServiceDomain:
        if self._domain is None:
            self._domain = (
                self.domain_factory()
                if self.domain_factory
                else load_domain(self.config.tasks.domain, self.config.tasks.data_dir)
            )
        return self._domain

    def library(self) -> StrategyLibrary:
        if self._library is None:
            self._library = (
                self.library_factory()
                if self.library_factory
                else StrategyLibrary.open(
                    self.store, self.workspace.chroma_dir, self.config.library_name
                )
            )
        return self._library

    @property
    def statuses(self) -> frozenset[str]:
        """Which strategies may reach a prompt in this run."""
        return TRAINING if self.config.use_proposed else USABLE

    def guide(self) -> Guide:
        """Top-k strategies for a conversation prefix (by its last turns)."""
        library, k, statuses = self.library(), self.config.refine.top_k, self.statuses

        def strategies_for(messages: Sequence[Message]) -> Guidance:
            hits = library.retrieve(retrieval_query(messages), k, statuses=statuses)
            return [(h.strategy.id, h.strategy.text) for h in hits]

        return strategies_for

    def settings(self) -> DialogueSettings:
        return DialogueSettings(**self.config.dialogue.model_dump(), seed=self.config.seed)

    def tasks(self, ids: Sequence[str]) -> list[ServiceTask]:
        domain = self.domain()
        return [domain.task(i) for i in ids]


def judge(
    ctx: TeachingContext,
    prefixes: Sequence[Sequence[Message]],
    first: Sequence[Message],
    second: Sequence[Message],
) -> list[float | None]:
    """The judge's preference for ``first`` over ``second`` per prefix (see :func:`prefer`)."""
    cfg = ctx.config.refine
    return prefer(
        ctx.engine("judge"),
        ctx.domain(),
        prefixes,
        first,
        second,
        both_orders=cfg.both_orders,
        max_tokens=cfg.judge_max_tokens,
        progress=ctx.progress,
    )
