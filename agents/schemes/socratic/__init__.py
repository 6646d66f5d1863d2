"""Socratic co-evolution (Socratic-Zero): a Teacher, a DPO-trained Solver, a weighted-SFT Generator.

``config.py`` holds the settings, ``graph.py`` the LangGraph graph and :class:`SocraticLoop`,
``rules.py`` the rule-based pieces (zones, pairs, parsing), ``prompts.yaml`` every prompt and
``report.py`` the report section.
"""

from agents.reporting import RunView
from agents.schemes.base import Scheme
from agents.schemes.socratic.config import SocraticJob
from agents.schemes.socratic.graph import SocraticLoop
from agents.schemes.socratic.report import summary_lines
from agents.store import Run, Store


def _summary(store: Store, run: Run) -> str:
    return "\n".join(summary_lines(RunView.load(store, run.id)))


SCHEME = Scheme(
    run=SocraticLoop,
    help="Socratic co-evolution: Teacher, DPO-trained Solver, weighted-SFT Generator",
    export_roles=("solver", "generator"),
    summary=_summary,
)

__all__ = ["SCHEME", "SocraticJob", "SocraticLoop"]
