"""RecBot: an interactive recommender agent (a parser and a planner) distilled into a student.

After *Interactive Recommendation Agent with Active User Commands* (arXiv 2509.21317).
``preferences.py`` holds the parser's JSON schema and the memory rule, ``users.py`` the
simulated users' goals, ``metrics.py`` the ranking metrics and the non-agent baselines; the
catalog and the planner's tools live in :mod:`tools.catalog`.
"""

from agents.schemes.base import Scheme
from agents.schemes.recbot.config import RecBotJob
from agents.schemes.recbot.graph import RecBotRun

SCHEME = Scheme(
    run=RecBotRun,
    help="RecBot: a teacher's parser and planner turns with simulated users teach a small agent",
    export_roles=("student",),
)

__all__ = ["SCHEME", "RecBotJob", "RecBotRun"]
