"""Audit operations: each is logged append-only; changes between sessions; show and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_strategy_library import TEACHER, open_library

from strategies import Auditor, StrategyLibrary, StrategyNotFound


@pytest.fixture
def library(tmp_path: Path, db_url: str) -> StrategyLibrary:
    return open_library(tmp_path, url=db_url)


def _with_scenario(library: StrategyLibrary) -> int:
    scenario = library.add_scenario(
        [
            {"role": "system", "content": "You are a retail support agent."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "My kettle arrived with a cracked lid, I want a refund."},
        ],
        source="failure",
        run_id="run-7",
        round=1,
        task_id="retail-42",
        meta={
            "student_reply": "Refunds are not possible.",
            "teacher_reply": "I'm sorry! Could you send a photo of the lid? Then I'll refund you.",
            "reason": "student refused a valid refund",
        },
    )
    strategy = library.add(
        "A customer reports a damaged item and asks for a refund.",
        "Apologise, ask for a photo of the damage, then offer a refund.",
        author=TEACHER,
        scenario_ids=[scenario.id],  # type: ignore[list-item]
        run_id="run-7",
        teacher="builtin:qwen2.5-coder-0.5b",
        round=1,
        score_before=0.2,
        teacher_score=0.9,
    )
    library.record_scores([strategy.id], score_after=0.8)  # type: ignore[list-item]
    return strategy.id  # type: ignore[return-value]


def test_every_operation_appends_one_event_and_never_changes_earlier_ones(
    library: StrategyLibrary,
) -> None:
    sid = _with_scenario(library)
    auditor = Auditor(library, reviewer="alice")
    auditor.approve(sid, note="matches policy")
    (first,) = library.events()
    snapshot = first.model_dump()
    assert (first.action, first.actor, first.strategy_id) == ("approve", "reviewer:alice", sid)
    assert first.detail["reason"] == "matches policy" and first.detail["from_status"] == "proposed"

    auditor.reject(sid, reason="too lenient")
    auditor.show(sid)
    auditor.why(sid)
    auditor.search("refund")
    auditor.edit(sid, "Apologise and ask for a photo.", reason="clearer")
    events = library.events()
    assert [e.action for e in events] == ["approve", "reject", "show", "why", "search", "edit"]
    assert events[0].model_dump() == snapshot  # the first row is exactly as written
    assert events[-1].detail["new_text"] == "Apologise and ask for a photo."
    assert [e.action for e in library.events(actions=["reject", "edit"])] == ["reject", "edit"]
    assert library.events(since=events[-1].at)[-1].id == events[-1].id


def test_reject_then_approve_again_is_allowed_and_versioned(library: StrategyLibrary) -> None:
    sid = _with_scenario(library)
    auditor = Auditor(library, reviewer="bob")
    assert auditor.reject(sid, "wrong").status == "rejected"
    approved = auditor.approve(sid, "on second thought")
    assert (approved.status, approved.version) == ("approved", 3)
    assert [(v.status, v.author, v.reason) for v in library.versions(sid)][1:] == [
        ("rejected", "reviewer:bob", "wrong"),
        ("approved", "reviewer:bob", "on second thought"),
    ]
    assert library.events(actions=["approve"])[0].detail["from_status"] == "rejected"


def test_edit_writes_an_edited_version(library: StrategyLibrary) -> None:
    sid = _with_scenario(library)
    edited = Auditor(library, "carol").edit(
        sid, "Ask for a photo first.", situation="Damaged item.", reason="focus"
    )
    assert (edited.status, edited.version, edited.situation) == ("edited", 2, "Damaged item.")
    assert library.versions(sid)[-1].author == "reviewer:carol"
    with pytest.raises(StrategyNotFound):
        Auditor(library).edit(999, "x")


def test_search_shows_rejected_strategies_to_reviewers(library: StrategyLibrary) -> None:
    sid = _with_scenario(library)
    auditor = Auditor(library)
    auditor.reject(sid)
    assert library.retrieve("damaged item refund") == []
    assert [h.strategy.id for h in auditor.search("damaged item refund")] == [sid]
    assert library.events(actions=["search"])[0].detail["results"] == [sid]


def test_changes_since_last_audit_covers_what_happened_between_sessions(
    library: StrategyLibrary,
) -> None:
    first = library.add("Refund.", "Refund politely.", author=TEACHER)
    monday = Auditor(library, "alice")
    initial = monday.start_session()  # no earlier session: everything so far
    assert [(c.strategy_id, c.version) for c in initial] == [(first.id, 1)]
    monday.approve(first.id)  # type: ignore[arg-type]

    second = library.add("Cancel.", "Cancel before shipping.", author=TEACHER)
    library.revise(first.id, "Refund politely and fast.", author=TEACHER, reason="speed")  # type: ignore[arg-type]

    tuesday = Auditor(library, "bob")
    changes = tuesday.start_session()
    assert [(c.strategy_id, c.version, c.status, c.author) for c in changes] == [
        (first.id, 2, "approved", "reviewer:alice"),
        (second.id, 1, "proposed", TEACHER),
        (first.id, 3, "approved", TEACHER),
    ]
    assert changes[-1].reason == "speed" and changes[-1].text == "Refund politely and fast."
    assert tuesday.changes_since_last_audit() == changes  # still relative to Monday's session
    assert library.events(actions=["session_start"])[-1].detail == {"changes": 3}
    assert library.events(actions=["changes"])[-1].actor == "reviewer:bob"
    assert Auditor(library, "carol").start_session() == []  # nothing since Tuesday began


def test_why_explains_from_provenance(library: StrategyLibrary) -> None:
    sid = _with_scenario(library)
    Auditor(library, "alice").edit(sid, "Ask for a photo, then refund.", reason="shorter")
    text = Auditor(library, "bob").why(sid)
    assert "My kettle arrived with a cracked lid, I want a refund." in text
    assert "Refunds are not possible." in text  # the student's reply
    assert "Could you send a photo of the lid?" in text  # the teacher's reply
    assert "0.20 before the strategy, 0.80 with it" in text
    assert f"Written by {TEACHER}" in text and "run-7" in text
    assert "v2 by reviewer:alice" in text and "shorter" in text
    assert library.events(actions=["why"])[-1].strategy_id == sid


def test_show_gathers_versions_scenarios_and_events(library: StrategyLibrary) -> None:
    sid = _with_scenario(library)
    auditor = Auditor(library, "alice")
    auditor.approve(sid, "fine")
    view = auditor.show(sid)
    assert [v.version for v in view.versions] == [1, 2]
    assert [s.task_id for s in view.scenarios] == ["retail-42"]
    assert [e.action for e in view.events] == ["approve"]
    text = view.format()
    for expected in (
        f"Strategy {sid} [approved, version 2]",
        "Apologise, ask for a photo of the damage",
        "teacher: builtin:qwen2.5-coder-0.5b; run: run-7; round: 1",
        "0.20 -> 0.80",
        "on the teacher: 0.90",
        "customer: My kettle arrived with a cracked lid",
        "v2 approved by reviewer:alice",
    ):
        assert expected in text, expected
    assert "Hello! How can I help?" not in text  # only the customer's last message is quoted
    assert [s.id for s in auditor.list_strategies("approved")] == [sid]
    assert auditor.list_strategies("rejected") == []
