"""The schemes ``agents run`` knows: one explicit list, one line per scheme.

A scheme is a package under ``agents/schemes/`` exporting a :class:`~agents.schemes.base.Scheme`
record; adding one to this list is all the command line, the report and the export need.
"""

from __future__ import annotations

from agents.config import ConfigError
from agents.reporting import ReportSection
from agents.schemes import agent_distill, dpo, eval, recbot, sft, socratic, strategy_teaching
from agents.schemes.base import Scheme

SCHEMES: list[Scheme] = [
    sft.SCHEME,
    dpo.SCHEME,
    eval.SCHEME,
    socratic.SCHEME,
    agent_distill.SCHEME,
    strategy_teaching.SCHEME,
    recbot.SCHEME,
]


def scheme_named(name: str | None) -> Scheme | None:
    """The listed scheme called ``name``, or None (e.g. a stored run of a scheme since removed)."""
    return next((scheme for scheme in SCHEMES if scheme.name == name), None)


def find_scheme(name: str) -> Scheme:
    """The scheme called ``name``; an unknown name is a :class:`ConfigError` listing the known."""
    scheme = scheme_named(name)
    if scheme is None:
        known = ", ".join(sorted(s.name for s in SCHEMES))
        raise ConfigError(f"no scheme named {name!r}; available: {known}")
    return scheme


def report_section(name: str) -> ReportSection | None:
    """The report section of the scheme called ``name`` (None for a scheme not listed here)."""
    scheme = scheme_named(name)
    return scheme.report if scheme is not None else None
