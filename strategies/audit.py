"""What a reviewer does to a strategy library: search, inspect, explain, approve, reject, edit.

Every operation goes through :class:`Auditor` and appends an event to the library's audit log, so
the log answers "who looked at or changed what, and when" without relying on anyone's memory.
Status changes and edits also become new strategy versions (see :mod:`strategies.library`).
"""

from __future__ import annotations

import logging
import textwrap
from dataclasses import dataclass
from datetime import datetime

from strategies.library import StrategyHit, StrategyLibrary, check_statuses
from strategies.records import STATUSES, AuditEvent, Scenario, Strategy, StrategyVersion

logger = logging.getLogger(__name__)

_EXCERPT_CHARS = 240


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def excerpt(text: str, limit: int = _EXCERPT_CHARS) -> str:
    """``text`` on one line, shortened to ``limit`` characters with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def first_words(text: str, words: int = 8) -> str:
    """The first few words of ``text``, with an ellipsis when there are more."""
    parts = str(text).split()
    return " ".join(parts[:words]) + ("…" if len(parts) > words else "")


def last_customer_message(scenario: Scenario) -> str:
    """The scenario's last user message (what the strategy must answer), or ``""``."""
    for message in reversed(scenario.messages):
        if message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else str(content or "")
    return ""


@dataclass
class Change:
    """One version written since the last audit.

    Attributes:
        strategy_id: The strategy.
        version: Its version number.
        status: The status that version has.
        author: Who wrote the version.
        text: The guidance in that version.
        reason: Why it was written, if given.
        created_at: When.
    """

    strategy_id: int
    version: int
    status: str
    author: str
    text: str
    reason: str | None
    created_at: datetime

    def format(self) -> str:
        """One line: id, version, status, author, time and the start of the text."""
        why = f" ({self.reason})" if self.reason else ""
        return (
            f"#{self.strategy_id} v{self.version} {self.status} by {self.author}, "
            f"{_when(self.created_at)}{why}: {first_words(self.text, 12)}"
        )


@dataclass
class StrategyView:
    """Everything about one strategy.

    Attributes:
        strategy: Its current row.
        versions: Its history, oldest first.
        scenarios: The scenarios it was written for.
        events: The audit events about it.
    """

    strategy: Strategy
    versions: list[StrategyVersion]
    scenarios: list[Scenario]
    events: list[AuditEvent]

    def format(self) -> str:
        """Readable multi-line text: the strategy, its provenance, sources and history."""
        s = self.strategy
        lines = [
            f"Strategy {s.id} [{s.status}, version {s.version}]",
            f"Situation: {s.situation}",
            "Guidance:",
            textwrap.indent(s.text, "  "),
            "Provenance:",
            f"  teacher: {s.teacher or 'unknown'}; run: {s.run_id or '-'}; "
            f"round: {'-' if s.round is None else s.round}; domain: {s.domain or '-'}",
            f"  judge on the student, before -> with it: {_score(s.score_before)} -> "
            f"{_score(s.score_after)}; on the teacher: {_score(s.teacher_score)}",
        ]
        if self.scenarios:
            lines.append("Source scenarios:")
            for scenario in self.scenarios:
                said = excerpt(last_customer_message(scenario)) or "(no customer message)"
                lines.append(f"  #{scenario.id} ({scenario.source}) customer: {said}")
        else:
            lines.append("Source scenarios: none recorded")
        lines.append("History:")
        for v in self.versions:
            why = f": {v.reason}" if v.reason else ""
            lines.append(f"  v{v.version} {v.status:<8} by {v.author}, {_when(v.created_at)}{why}")
        return "\n".join(lines)


class Auditor:
    """A reviewer's operations on one library; each is logged in the library's audit log.

    Args:
        library: The library under review.
        reviewer: The reviewer's name; versions they write are authored ``reviewer:<name>``.
    """

    def __init__(self, library: StrategyLibrary, reviewer: str = "reviewer") -> None:
        self.library = library
        self.reviewer = reviewer
        self.actor = reviewer if reviewer.startswith("reviewer:") else f"reviewer:{reviewer}"
        self._session_event: AuditEvent | None = None

    def _log(self, action: str, strategy_id: int | None = None, **detail: object) -> AuditEvent:
        return self.library.log(action, actor=self.actor, strategy_id=strategy_id, **detail)

    def record(self, action: str, strategy_id: int | None = None, **detail: object) -> AuditEvent:
        """Log an event by this reviewer that is not one of the operations below (a question to
        the auditor model, a declined confirmation...)."""
        return self._log(action, strategy_id, **detail)

    def start_session(self) -> list[Change]:
        """Open an audit session (logged); returns the changes since the previous session."""
        self._session_event = None  # a second call starts a new session after the first
        changes = self._changes()
        self._session_event = self._log("session_start", changes=len(changes))
        return changes

    def _last_audit(self) -> datetime | None:
        """When the most recent earlier audit session started (None if there was none)."""
        starts = self.library.events(actions=["session_start"])
        if self._session_event is not None:
            starts = [e for e in starts if (e.id or 0) < (self._session_event.id or 0)]
        return starts[-1].at if starts else None

    def _changes(self) -> list[Change]:
        return [
            Change(
                strategy_id=v.strategy_id,
                version=v.version,
                status=v.status,
                author=v.author,
                text=v.text,
                reason=v.reason,
                created_at=v.created_at,
            )
            for v in self.library.versions_since(self._last_audit())
        ]

    def changes_since_last_audit(self) -> list[Change]:
        """Versions written since the last audit session before this one (all, if none), oldest
        first."""
        changes = self._changes()
        self._log("changes", count=len(changes))
        return changes

    def search(self, query: str, k: int = 5) -> list[StrategyHit]:
        """Strategies nearest to ``query`` in every status, rejected ones included."""
        hits = self.library.retrieve(query, k, statuses=STATUSES)
        self._log("search", query=query, k=k, results=[h.strategy.id for h in hits])
        return hits

    def list_strategies(self, status: str | None = None) -> list[Strategy]:
        """All strategies in id order, or those with one status."""
        statuses = None if status is None else check_statuses([status])
        rows = self.library.strategies(statuses)
        self._log("list", status=status, count=len(rows))
        return rows

    def show(self, strategy_id: int) -> StrategyView:
        """Everything about one strategy: row, versions, source scenarios, audit events."""
        strategy = self.library.get(strategy_id)
        view = StrategyView(
            strategy=strategy,
            versions=self.library.versions(strategy_id),
            scenarios=self.library.scenarios(ids=strategy.scenario_ids),
            events=self.library.events(strategy_id=strategy_id),
        )
        self._log("show", strategy_id)
        return view

    def approve(self, strategy_id: int, note: str | None = None) -> Strategy:
        """Approve a strategy (any status, a rejected one too) so inference may use it."""
        return self._set_status("approve", strategy_id, "approved", note)

    def reject(self, strategy_id: int, reason: str | None = None) -> Strategy:
        """Reject a strategy: inference never uses it again unless it is approved later."""
        return self._set_status("reject", strategy_id, "rejected", reason)

    def _set_status(self, action: str, strategy_id: int, status: str, why: str | None) -> Strategy:
        before = self.library.get(strategy_id)
        after = self.library.set_status(strategy_id, status, author=self.actor, reason=why)
        self._log(
            action,
            strategy_id,
            reason=why,
            from_status=before.status,
            version=after.version,
            unchanged=before.version == after.version,
        )
        return after

    def edit(
        self,
        strategy_id: int,
        text: str,
        situation: str | None = None,
        reason: str | None = None,
    ) -> Strategy:
        """Rewrite a strategy as a new version with status ``edited``."""
        before = self.library.get(strategy_id)
        after = self.library.revise(
            strategy_id,
            text,
            author=self.actor,
            situation=situation,
            reason=reason,
            status="edited",
        )
        self._log(
            "edit",
            strategy_id,
            reason=reason,
            old_text=before.text,
            new_text=after.text,
            old_situation=before.situation,
            new_situation=after.situation,
            version=after.version,
        )
        return after

    def why(self, strategy_id: int) -> str:
        """Why a strategy exists, from its provenance: the scenarios, what the student and the
        teacher replied, the judge's scores, and who wrote and edited it when."""
        s = self.library.get(strategy_id)
        versions = self.library.versions(strategy_id)
        scenarios = self.library.scenarios(ids=s.scenario_ids)
        lines = [f"Strategy {s.id} ({s.status}, version {s.version}): {s.situation}"]
        if scenarios:
            lines.append(f"It was written for {len(scenarios)} scenario(s):")
        else:
            lines.append("No source scenario is recorded for it.")
        for scenario in scenarios:
            where = ", ".join(
                part
                for part in (
                    f"run {scenario.run_id}" if scenario.run_id else "",
                    f"round {scenario.round}" if scenario.round is not None else "",
                    f"task {scenario.task_id}" if scenario.task_id else "",
                )
                if part
            )
            said = excerpt(last_customer_message(scenario)) or "(no customer message)"
            lines.append(
                f"- scenario {scenario.id} ({scenario.source}{', ' + where if where else ''}): "
                f'the customer said "{said}"'
            )
            meta = scenario.meta or {}
            if meta.get("student_reply"):
                lines.append(f'  the student replied: "{excerpt(meta["student_reply"])}"')
            if meta.get("teacher_reply"):
                lines.append(f'  the teacher replied: "{excerpt(meta["teacher_reply"])}"')
            if meta.get("reason"):
                lines.append(f"  flagged because: {excerpt(meta['reason'])}")
        lines.append(
            f"The judge's preference for the student over the teacher: "
            f"{_score(s.score_before)} before the strategy, {_score(s.score_after)} with it "
            f"(0 = the teacher's reply always chosen, 0.5 = a tie)."
        )
        if versions:
            first = versions[0]
            teacher = f" (teacher {s.teacher}" + (f", run {s.run_id}" if s.run_id else "") + ")"
            lines.append(
                f"Written by {first.author}{teacher if s.teacher else ''} "
                f"on {_when(first.created_at)}."
            )
            for v in versions[1:]:
                why = f": {v.reason}" if v.reason else ""
                lines.append(
                    f"v{v.version} by {v.author} on {_when(v.created_at)} -> {v.status}{why}"
                )
        self._log("why", strategy_id)
        return "\n".join(lines)
