"""Strategy teaching's auditable library: records, retrieval, audit operations, the audit chat."""

from strategies.audit import Auditor, Change, StrategyView
from strategies.chat import AUDIT_TOOLS, AuditChat
from strategies.library import (
    TRAINING,
    USABLE,
    StrategyDraft,
    StrategyHit,
    StrategyLibrary,
    StrategyNotFound,
    library_names,
)
from strategies.records import (
    SCENARIO_SOURCES,
    STATUSES,
    AuditEvent,
    Scenario,
    Strategy,
    StrategyVersion,
)

__all__ = [
    "AUDIT_TOOLS",
    "SCENARIO_SOURCES",
    "STATUSES",
    "TRAINING",
    "USABLE",
    "AuditChat",
    "AuditEvent",
    "Auditor",
    "Change",
    "Scenario",
    "Strategy",
    "StrategyDraft",
    "StrategyHit",
    "StrategyLibrary",
    "StrategyNotFound",
    "StrategyVersion",
    "StrategyView",
    "library_names",
]
