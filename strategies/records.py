"""The tables of the strategy library: strategies, their version history, source scenarios, and
the audit log.

SQL is the source of truth; the Chroma index (see :mod:`strategies.library`) only mirrors the
strategies for retrieval. Every table carries a ``library`` name, so one store holds several
libraries (one per domain or product line, say) side by side.

``StrategyVersion`` and ``AuditEvent`` are append-only: the library code inserts rows there and
never updates or deletes them, so together they are a complete record of who changed what, when
and why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from agents.store import _created, _json

#: The life cycle of a strategy. ``edited`` means a reviewer rewrote it (and so vouches for it).
STATUSES = ("proposed", "approved", "rejected", "edited")
#: Where a scenario came from: a student failure, a teacher demonstration, or held-out evaluation.
SCENARIO_SOURCES = ("failure", "teacher", "heldout")


class Strategy(SQLModel, table=True):
    """One piece of guidance for a situation, in its current version.

    ``id`` is a small integer so reviewers can type it (``/approve 12``). ``origin`` is an
    idempotency key unique within a library: adding a strategy whose origin is already stored
    returns the stored row, so a stage that crashed and resumed does not duplicate its output.
    """

    __tablename__ = "strategies"
    __table_args__ = (UniqueConstraint("library", "origin"),)

    id: int | None = Field(default=None, primary_key=True)
    library: str = Field(index=True)
    situation: str
    text: str
    status: str = Field(default="proposed", index=True)
    version: int = 1
    domain: str | None = None
    scenario_ids: list[int] = _json(list)
    run_id: str | None = Field(default=None, index=True)
    teacher: str | None = None
    round: int | None = None
    # The judge's view of the student's reply to the source scenario, before the strategy
    # existed and once it was in the prompt, and of the teacher's. Strategy teaching records
    # preferences for the student over the teacher (0..1, a tie is 0.5); any scale works.
    score_before: float | None = None
    teacher_score: float | None = None
    score_after: float | None = None
    origin: str | None = None
    created_at: datetime = _created()
    updated_at: datetime = _created()


class StrategyVersion(SQLModel, table=True):
    """One version of a strategy: written at creation, at every text revision and status change."""

    __tablename__ = "strategy_versions"
    __table_args__ = (UniqueConstraint("strategy_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    strategy_id: int = Field(foreign_key="strategies.id", index=True)
    version: int
    situation: str
    text: str
    status: str
    author: str
    reason: str | None = None
    created_at: datetime = _created()


class Scenario(SQLModel, table=True):
    """A customer conversation a strategy was written for (or evaluated on).

    ``messages`` is the conversation so far in OpenAI format, ending with the customer's message;
    ``meta`` holds why it was flagged and what each model replied (``student_reply``,
    ``teacher_reply``, judge scores...).
    """

    __tablename__ = "strategy_scenarios"
    __table_args__ = (UniqueConstraint("library", "origin"),)

    id: int | None = Field(default=None, primary_key=True)
    library: str = Field(index=True)
    run_id: str | None = Field(default=None, index=True)
    round: int | None = None
    domain: str | None = None
    task_id: str | None = None
    source: str
    messages: list[dict[str, Any]] = _json(list)
    meta: dict[str, Any] = _json()
    origin: str | None = None
    created_at: datetime = _created()


class AuditEvent(SQLModel, table=True):
    """One line of the audit log: who did what to which strategy (append-only)."""

    __tablename__ = "strategy_audit_log"

    id: int | None = Field(default=None, primary_key=True)
    library: str = Field(index=True)
    strategy_id: int | None = Field(default=None, index=True)
    action: str = Field(index=True)
    actor: str
    detail: dict[str, Any] = _json()
    at: datetime = _created()


TABLES = [
    table.__table__  # type: ignore[attr-defined]
    for table in (Strategy, StrategyVersion, Scenario, AuditEvent)
]
