"""RecBot: an interactive recommender agent (a parser and a planner) distilled into a student.

After *Interactive Recommendation Agent with Active User Commands* (arXiv 2509.21317).
``config.py`` holds the settings, ``graph.py`` the LangGraph graph and :class:`RecBotRun`,
``episode.py`` the episode graph (simulated user, Parser, Planner), ``preferences.py`` the
parser's JSON schema and memory rule, ``users.py`` the simulated users' goals, ``metrics.py``
the ranking metrics and the baselines, ``chat.py`` ``agents chat recbot``; the catalog and the
planner's tools live in :mod:`tools.catalog`.
"""

from __future__ import annotations

from agents.schemes.base import Scheme
from agents.schemes.recbot.config import RecBotJob
from agents.schemes.recbot.graph import RecBotRun
from agents.store import Workspace


def _chat(model: str | None, workspace: Workspace, user: str | None) -> int:
    from agents.schemes.recbot.chat import run_chat

    return run_chat(model, workspace, user=user)


SCHEME = Scheme(
    run=RecBotRun,
    help="RecBot: a teacher's parser and planner turns with simulated users teach a small agent",
    export_roles=("student",),
    chat=_chat,
)

__all__ = ["SCHEME", "RecBotJob", "RecBotRun"]
