"""What an agent exported from a strategy-teaching run carries: the student's base weights, its
system prompt, and a snapshot of the library's audited strategies with the run's retrieval
settings, so ``load_agent(DIR).ask()`` puts the same strategies in front of the same questions.

Only ``approved`` and ``edited`` strategies are exported (the audit gate); exporting again after
an audit picks up the new decisions.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select

from agents.episodes.dialogue import GUIDANCE_HEADER, agent_system_prompt
from agents.schemes.strategy_teaching.config import StrategyTeachingJob
from agents.store import Run, Store
from strategies.library import USABLE, ensure_tables
from strategies.records import Strategy
from tools.retrieval import BUILTIN_EMBEDDING
from tools.service import load_domain

#: Messages a retrieval query is made of (as ``rules.retrieval_query``).
QUERY_TURNS = 3


def export_card(store: Store, run: Run) -> dict[str, Any]:
    """The fields of the agent card of a strategy-teaching run's student."""
    config = StrategyTeachingJob.model_validate(run.config)
    ensure_tables(store)
    with store.session() as session:
        rows = session.exec(
            select(Strategy)
            .where(Strategy.library == config.library_name, col(Strategy.status).in_(USABLE))
            .order_by(col(Strategy.id))
        ).all()
    domain = load_domain(config.tasks.domain, config.tasks.data_dir)
    return dict(
        name=f"{run.scheme}-student-{run.id}",
        base_model=config.student,
        system_prompt=agent_system_prompt(domain),
        strategies=[
            {
                "id": row.id,
                "version": row.version,
                "status": row.status,
                "situation": row.situation,
                "text": row.text,
            }
            for row in rows
        ],
        retrieval={
            "library": config.library_name,
            "top_k": config.refine.top_k,
            "turns": QUERY_TURNS,
            "header": GUIDANCE_HEADER,
            "embedding": BUILTIN_EMBEDDING,
        },
        run_id=run.id,
        scheme=run.scheme,
    )
