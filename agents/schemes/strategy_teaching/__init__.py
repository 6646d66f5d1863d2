"""Strategy teaching: a teacher writes an auditable strategy library for a small student.

``config.py`` holds the settings, ``graph.py`` the LangGraph graph and :class:`StrategyTeaching`,
``rules.py`` the judge's and writer's rules, ``baselines.py`` the generic-guidance and fine-tuned
baselines, ``scores.py`` the held-out intervals and paired tests, ``prompts.yaml`` every prompt
and ``report.py`` the report section. The strategies change no weights: an export carries the
student's base weights and a snapshot of the audited strategies (``export.py``), retrieved per
question as in the run.
"""

from agents.schemes.base import Scheme
from agents.schemes.strategy_teaching.config import StrategyTeachingJob
from agents.schemes.strategy_teaching.export import export_card
from agents.schemes.strategy_teaching.graph import StrategyTeaching

SCHEME = Scheme(
    run=StrategyTeaching,
    help="Strategy teaching: a teacher writes an auditable strategy library for a small student",
    export_card=export_card,
)

__all__ = ["SCHEME", "StrategyTeaching", "StrategyTeachingJob"]
