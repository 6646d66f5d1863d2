"""Agent distillation: a teacher's tool-using trajectories fine-tune a small student agent.

``config.py`` holds the settings, ``graph.py`` the LangGraph graph and :class:`AgentDistillation`,
``prompts.yaml`` its prompts and ``report.py`` the report section.
"""

from agents.episodes.agent_loop import DEMONSTRATIONS
from agents.schemes.agent_distill.config import AgentDistillJob
from agents.schemes.agent_distill.graph import AgentDistillation
from agents.schemes.base import Scheme

SCHEME = Scheme(
    run=AgentDistillation,
    help="Agent distillation: a teacher's tool-using trajectories fine-tune a small agent",
    export_roles=("student",),
    demonstrations=lambda: list(DEMONSTRATIONS),
)

__all__ = ["SCHEME", "AgentDistillJob", "AgentDistillation"]
