"""Customer-service domains (τ²-bench retail and airline): tools over a JSON database, tasks with
gold actions, and the checks that score a conversation.

``load_domain("retail")`` reads the data shipped in the ``inspect-evals`` package; each episode
gets its own database copy through ``ServiceDomain.tool_context()``.
"""

from __future__ import annotations

from tools.service.checks import (
    ActionScore,
    Violation,
    policy_violations,
    score_actions,
    tool_calls_of,
)
from tools.service.common import (
    DomainState,
    DomainUnavailable,
    GoldAction,
    ServiceDomain,
    ServiceTask,
)
from tools.service.registry import DOMAINS, load_domain

__all__ = [
    "DOMAINS",
    "ActionScore",
    "DomainState",
    "DomainUnavailable",
    "GoldAction",
    "ServiceDomain",
    "ServiceTask",
    "Violation",
    "load_domain",
    "policy_violations",
    "score_actions",
    "tool_calls_of",
]
