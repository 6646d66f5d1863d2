"""The customer-service domains by name, and ``load_domain``.

This module sits above the domain modules: it imports them, they never import it, so adding a
domain means adding its module and one entry in ``_DOMAIN_MODULES``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import ModuleType

from tools.service import airline, retail
from tools.service.common import ServiceDomain, package_data_dir, read_domain

# Each domain module defines TOOLS, WRITE_TOOLS and AUTH_TOOLS.
_DOMAIN_MODULES: dict[str, ModuleType] = {"retail": retail, "airline": airline}
DOMAINS = tuple(_DOMAIN_MODULES)


@functools.lru_cache(maxsize=8)
def _load(name: str, root: str) -> ServiceDomain:
    module = _DOMAIN_MODULES[name]
    return read_domain(
        name, Path(root) / name, list(module.TOOLS), module.WRITE_TOOLS, module.AUTH_TOOLS
    )


def load_domain(name: str = "retail", data_dir: str | Path | None = None) -> ServiceDomain:
    """Load a customer-service domain (cached per name and data directory).

    Args:
        name: ``"retail"`` or ``"airline"``.
        data_dir: A directory holding ``<name>/policy.txt``, ``db.json.gz`` (or ``db.json``),
            ``tasks.json`` and ``split_tasks.json``; the installed ``inspect-evals`` package's
            ``tau2/data/domains`` when omitted.

    Raises:
        ValueError: For an unknown domain name.
        DomainUnavailable: If the data files are missing or unreadable.
    """
    if name not in DOMAINS:
        raise ValueError(f"unknown customer-service domain {name!r}; choose one of: {DOMAINS}")
    root = Path(data_dir) if data_dir is not None else package_data_dir()
    return _load(name, str(root.resolve()))
