"""What the strategy-teaching stages share: the run's state, its runtime context (engines per
role, the domain, the strategy library) and the judge."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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

#: Held-out agents: name → (model role, the strategies it retrieves: none, learned or generic).
AGENTS: dict[str, tuple[str, str | None]] = {
    "student": ("student", None),
    "student_generic": ("student", "generic"),
    "student_finetuned": ("student_finetuned", None),
    "student_strategies": ("student", "learned"),
    "teacher": ("teacher", None),
    "transfer": ("transfer_student", None),
    "transfer_strategies": ("transfer_student", "learned"),
}

#: Judged comparisons on held-out scenarios: name → (agent A, agent B); win rate is A's.
COMPARISONS: dict[str, tuple[str, str]] = {
    "strategies_vs_alone": ("student_strategies", "student"),
    "generic_vs_alone": ("student_generic", "student"),
    "finetuned_vs_alone": ("student_finetuned", "student"),
    "strategies_vs_generic": ("student_strategies", "student_generic"),
    "strategies_vs_finetuned": ("student_strategies", "student_finetuned"),
    "strategies_vs_teacher": ("student_strategies", "teacher"),
    "generic_vs_teacher": ("student_generic", "teacher"),
    "finetuned_vs_teacher": ("student_finetuned", "teacher"),
    "alone_vs_teacher": ("student", "teacher"),
    "transfer_strategies_vs_alone": ("transfer_strategies", "transfer"),
}


class TeachingState(TypedDict, total=False):
    round: int
    rounds: int
    train: list[list[str]]  # task ids of each round
    heldout: list[str]
    scenarios: list[int]  # this round's scenario ids
    student_finetuned_adapter: str  # the fine-tuned baseline's adapter


@dataclass
class TeachingContext(RoleContext):
    """Runtime context: config, store, engines per role, the domain and the strategy library."""

    config: StrategyTeachingJob
    domain_factory: Callable[[], ServiceDomain] | None = None
    library_factory: Callable[[str], StrategyLibrary] | None = None
    _domain: ServiceDomain | None = None
    _libraries: dict[str, StrategyLibrary] = field(default_factory=dict)

    def engine(self, role: str, adapter: str | None = None) -> CachedEngine:
        """The role's engine; roles naming the same model with the same options share one.

        ``student_finetuned`` (the fine-tuned baseline) is the student's model with ``adapter``
        loaded, in an engine of its own so the student's stays without it.
        """
        if role == "student_finetuned" and role not in self.engines:
            inner = (
                self.loader(role)
                if self.loader
                else load_engine(self.config.student, **self.config.engine.get("student", {}))
            )
            self.engines[role] = CachedEngine(inner, self.store, run_id=self.run_id, role=role)
            self.engines[role].set_adapter(adapter)
        if role not in self.engines:
            spec = self.config.role_model(role)
            options = self.config.engine.get(role, {})
            shared = next(
                (
                    e.inner
                    for other, e in self.engines.items()
                    if other != "student_finetuned"  # its adapter is its own
                    and self.config.role_model(other) == spec
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

    def library(self, name: str | None = None) -> StrategyLibrary:
        """The strategy library ``name`` (default: the run's)."""
        name = name or self.config.library_name
        if name not in self._libraries:
            self._libraries[name] = (
                self.library_factory(name)
                if self.library_factory
                else StrategyLibrary.open(self.store, self.workspace.chroma_dir, name)
            )
        return self._libraries[name]

    @property
    def generic_library_name(self) -> str:
        """The run's own library of generic strategies (the generic-guidance baseline)."""
        return f"{self.config.library_name}-generic-{self.run_id}"

    @property
    def statuses(self) -> frozenset[str]:
        """Which strategies may reach a prompt in this run."""
        return TRAINING if self.config.use_proposed else USABLE

    def guide(self, library: str | None = None) -> Guide:
        """Top-k strategies for a conversation prefix (by its last turns), from the run's library
        or, for the generic baseline, from ``library`` (all of whose strategies are usable)."""
        source, k = self.library(library), self.config.refine.top_k
        statuses = self.statuses if library is None else TRAINING

        def strategies_for(messages: Sequence[Message]) -> Guidance:
            hits = source.retrieve(retrieval_query(messages), k, statuses=statuses)
            return [(h.strategy.id, h.strategy.text) for h in hits]

        return strategies_for

    def agent_guide(self, guidance: str | None) -> Guide | None:
        """What a held-out agent retrieves: nothing, the learned or the generic strategies."""
        if guidance is None:
            return None
        return self.guide(self.generic_library_name if guidance == "generic" else None)

    def settings(self, heldout: bool = False) -> DialogueSettings:
        """Dialogue limits: the training ones, or the held-out ones (long enough to finish)."""
        settings = DialogueSettings(**self.config.dialogue.model_dump(), seed=self.config.seed)
        if heldout:
            settings.max_turns = self.config.evaluation.max_turns
            settings.max_tool_calls = self.config.evaluation.max_tool_calls
        return settings

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
