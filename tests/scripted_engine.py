"""The base of the scripted test engines: a spec, a named adapter, and a record of requests."""

from __future__ import annotations

from collections import Counter

from agents.models.base import ChatRequest, Engine


class ScriptedEngine(Engine):
    """An engine whose subclasses answer by rule; it records every request that reaches it.

    Args:
        role: The role's name (part of the spec).
    """

    def __init__(self, role: str) -> None:
        self.spec = f"scripted:{role}"
        self.role = role
        self.adapter: str | None = None
        self.asked: Counter[str] = Counter()  # samples asked, by request kind
        self.requests: list[tuple[str, ChatRequest]] = []  # (kind, request) as they arrived

    @property
    def fingerprint(self) -> str:
        return f"{self.spec}+{self.adapter}"

    def set_adapter(self, path: object) -> None:
        self.adapter = None if path is None else str(path)

    def requests_of(self, kind: str) -> list[ChatRequest]:
        return [r for k, r in self.requests if k == kind]
