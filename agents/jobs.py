"""The schemes ``agents run`` knows: one explicit list, one line per scheme.

A scheme is a package under ``agents/schemes/`` exporting a :class:`~agents.schemes.base.Scheme`
record; adding one to this list is all the command line, the report and the export need.
"""

from __future__ import annotations

from agents.config import ConfigError
from agents.reporting import ReportSection
from agents.schemes import agent_distill, dpo, eval, sft, socratic, strategy_teaching
from agents.schemes.base import Scheme

SCHEMES: list[Scheme] = [
    sft.SCHEME,
    dpo.SCHEME,
    eval.SCHEME,
    socratic.SCHEME,
    agent_distill.SCHEME,
    strategy_teaching.SCHEME,
]


def find_scheme(name: str, schemes: list[Scheme] | None = None) -> Scheme:
    """The scheme called ``name``; an unknown name is a :class:`ConfigError` listing the known."""
    known = {scheme.name: scheme for scheme in (SCHEMES if schemes is None else schemes)}
    if name not in known:
        raise ConfigError(f"no scheme named {name!r}; available: {', '.join(sorted(known))}")
    return known[name]


def report_section(name: str) -> ReportSection | None:
    """The report section of the scheme called ``name`` (None for a scheme not listed here)."""
    found = [scheme for scheme in SCHEMES if scheme.name == name]
    return found[0].report if found else None
