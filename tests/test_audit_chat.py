"""The audit chat driven by lists of lines: commands, confirmations, bad input, the auditor agent,
and ``agents audit`` from the command line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from scripted_engine import ScriptedEngine
from test_strategy_library import TEACHER, open_library

from agents.cli import EXIT_USER_ERROR, main
from agents.models.base import ChatRequest, ChatResult, Completion, Engine, EngineError
from agents.store import Store, Workspace
from strategies import AuditChat, Auditor, StrategyLibrary


def _call(name: str, **arguments: object) -> dict[str, object]:
    return {"type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


class AuditorModel(ScriptedEngine):
    """Plays back a script: each reply is either tool calls or a final text."""

    def __init__(self, *replies: list[dict[str, object]] | str) -> None:
        super().__init__("auditor")
        self.replies = list(replies)

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        results = []
        for request in requests:
            self.requests.append(("audit", request))
            reply = self.replies.pop(0)
            if isinstance(reply, str):
                completion = Completion(text=reply)
            else:
                completion = Completion(text="", finish_reason="tool_calls", tool_calls=reply)
            results.append(ChatResult(completions=[completion]))
        return results


@pytest.fixture
def library(tmp_path: Path, db_url: str) -> StrategyLibrary:
    library = open_library(tmp_path, url=db_url)
    scenario = library.add_scenario(
        [{"role": "user", "content": "The toaster I got is broken, refund please."}],
        source="failure",
        meta={"student_reply": "No.", "teacher_reply": "Sorry! Refund on the way."},
    )
    library.add(
        "Customer asks for a refund on a damaged item.",
        "Apologise, ask for a photo, then refund.",
        author=TEACHER,
        scenario_ids=[scenario.id],  # type: ignore[list-item]
        score_before=0.1,
    )
    library.add("Customer wants to change the address.", "Confirm the new address.", author=TEACHER)
    return library


def chat(library: StrategyLibrary, lines: list[str], engine: Engine | None = None) -> list[str]:
    """Run the chat over ``lines``; returns everything it wrote."""
    out: list[str] = []
    AuditChat(Auditor(library, "alice"), engine).run(lines, write=out.append)
    return out


def test_commands_show_search_explain_list_and_change(library: StrategyLibrary) -> None:
    out = chat(
        library,
        [
            "/help",
            "/list",
            "/search refund damaged",
            "/show 1",
            "/why 1",
            "/approve 1 matches policy",
            "/list approved",
            "/changes",
            "/quit",
            "/approve 2",  # after /quit: never read
        ],
    )
    greeting, help_text, listing, search, show, why, approve, approved, changes = out
    assert "2 strategies (2 proposed)" in greeting and "2 change(s)" in greeting
    assert "/changes" in greeting
    assert "/reject ID [reason]" in help_text
    assert listing.splitlines() == [
        "#1 [proposed] v1 Customer asks for a refund on a damaged item.",
        "#2 [proposed] v1 Customer wants to change the address.",
    ]
    assert search.startswith("#1 [proposed]")
    assert "Strategy 1 [proposed, version 1]" in show and "toaster" in show
    assert "The toaster I got is broken" in why and '"No."' in why
    assert approve == "Strategy 1 is approved (version 2)."
    assert approved.splitlines() == [
        "#1 [approved] v2 Customer asks for a refund on a damaged item."
    ]
    assert "#1 v2 approved by reviewer:alice" in changes
    assert library.get(2).status == "proposed"
    actions = [e.action for e in library.events()]
    assert actions == [
        "session_start", "list", "search", "show", "why", "approve", "list", "changes"
    ]  # fmt: skip


def test_reject_and_edit_act_only_after_yes(library: StrategyLibrary) -> None:
    out = chat(
        library,
        [
            "/reject 1 too lenient",
            "n",
            "/edit 2 Confirm the new address and the order number.",
            "no",
            "/reject 1 too lenient",
            "Y",
            "/edit 2 Confirm the new address and the order number.",
            "yes",
        ],
    )
    assert out[1] == "Reject strategy 1 (Apologise, ask for a photo, then refund.)? [y/N]"
    assert out[2] == "Strategy 1 is unchanged."
    assert out[3].startswith('Edit strategy 2 (Confirm the new address.) to "Confirm the new')
    assert out[4] == "Strategy 2 is unchanged."
    assert out[6] == "Strategy 1 is rejected (version 2)."
    assert out[8] == "Strategy 2 is edited (version 2)."
    one, two = library.get(1), library.get(2)
    assert (one.status, one.version) == ("rejected", 2)
    assert (two.status, two.text) == ("edited", "Confirm the new address and the order number.")
    assert library.versions(1)[-1].reason == "too lenient"
    actions = [e.action for e in library.events()][1:]
    assert actions == ["decline", "decline", "reject", "edit"]


def test_a_confirmation_at_the_end_of_input_counts_as_no(library: StrategyLibrary) -> None:
    out = chat(library, ["/reject 1"])
    assert out[-1] == "Strategy 1 is unchanged."
    assert library.get(1).status == "proposed"


def test_bad_input_gets_one_sentence_and_the_chat_goes_on(library: StrategyLibrary) -> None:
    out = chat(
        library,
        [
            "/frobnicate 1",
            "/show",
            "/show twelve",
            "/show 99",
            "/approve",
            "/edit 1",
            "/search",
            "/list maybe",
            "",
            "/approve 2",
        ],
    )
    replies = out[1:]
    assert replies[0].startswith("Unknown command /frobnicate; the commands are /help")
    assert replies[1] == "Give a strategy id: /show ID."
    assert replies[2] == "'twelve' is not a strategy id (a whole number): /show ID."
    assert replies[3].startswith("There is no strategy 99 in library 'retail'")
    assert replies[4] == "Give a strategy id: /approve ID [note]."
    assert replies[5] == "Give the new text: /edit 1 NEW TEXT."
    assert replies[6] == "Say what to search for: /search QUERY."
    assert replies[7].startswith("Unknown status 'maybe'")
    assert replies[8] == "Strategy 2 is approved (version 2)."  # the chat went on
    assert all("\n" not in r for r in replies[:8])
    assert library.get(1).version == 1


def test_free_form_without_a_model_points_to_the_model_flag(library: StrategyLibrary) -> None:
    out = chat(library, ["which strategies are about refunds?"])
    assert out[1].startswith("Free-form questions need an auditor model")
    assert "agents audit --model SPEC" in out[1] and "/search" in out[1]


def test_auditor_agent_searches_then_answers(library: StrategyLibrary) -> None:
    model = AuditorModel(
        [_call("search_strategies", query="refund")],
        "Strategy #1 covers refunds for damaged items.",
        "Strategy #2 is about address changes.",
    )
    out = chat(library, ["Which strategy handles refunds?", "And the other one?"], model)
    assert out[1:] == [
        "Strategy #1 covers refunds for damaged items.",
        "Strategy #2 is about address changes.",
    ]
    first, second, third = model.requests_of("audit")
    names = {t["function"]["name"] for t in first.tools or ()}
    assert names == {
        "search_strategies", "show_strategy", "explain_strategy", "changes_since_last_audit",
        "approve_strategy", "reject_strategy", "edit_strategy",
    }  # fmt: skip
    tool_message = second.messages[-1]
    assert tool_message["role"] == "tool" and tool_message["name"] == "search_strategies"
    assert tool_message["content"].startswith("#1 [proposed]")
    # The next question sees the earlier question and answer (not the tool traffic).
    assert [m["role"] for m in third.messages] == ["system", "user", "assistant", "user"]
    assert third.messages[2]["content"] == "Strategy #1 covers refunds for damaged items."
    asks = library.events(actions=["ask"])
    assert asks[0].detail == {
        "question": "Which strategy handles refunds?",
        "answer": "Strategy #1 covers refunds for damaged items.",
        "tools": ["search_strategies"],
    }
    assert asks[1].detail["tools"] == []


def test_auditor_agent_reject_is_confirmed_then_applied(library: StrategyLibrary) -> None:
    model = AuditorModel(
        [_call("reject_strategy", strategy_id=1, reason="refunds need a photo first")],
        "I rejected strategy #1.",
    )
    out = chat(library, ["Reject strategy 1, please.", "y"], model)
    assert out[1] == "Reject strategy 1 (Apologise, ask for a photo, then refund.)? [y/N]"
    assert out[2] == "I rejected strategy #1."
    assert library.get(1).status == "rejected"
    assert library.versions(1)[-1].reason == "refunds need a photo first"
    assert (
        model.requests_of("audit")[1].messages[-1]["content"].startswith("Strategy 1 is rejected")
    )
    assert [e.action for e in library.events()][1:] == ["reject", "ask"]


def test_auditor_agent_edit_declined_leaves_the_strategy_unchanged(
    library: StrategyLibrary,
) -> None:
    model = AuditorModel(
        [_call("edit_strategy", strategy_id=2, text="Just do it.")],
        "The reviewer kept strategy #2 as it is.",
    )
    out = chat(library, ["Shorten strategy 2.", "n"], model)
    assert out[1].startswith("Edit strategy 2 (Confirm the new address.)")
    assert library.get(2).text == "Confirm the new address." and library.get(2).version == 1
    observation = model.requests_of("audit")[1].messages[-1]["content"]
    assert observation == "The reviewer declined; nothing was changed."
    assert [e.action for e in library.events()][1:] == ["decline", "ask"]


def test_auditor_agent_stops_at_its_step_limit(library: StrategyLibrary) -> None:
    model = AuditorModel(*([[_call("show_strategy", strategy_id=1)]] * 3))
    out: list[str] = []
    AuditChat(Auditor(library), model, max_agent_steps=3).run(["Loop forever."], out.append)
    assert len(model.requests) == 3
    assert "stopped after 3 steps" in out[-1]


class DownModel(ScriptedEngine):
    def __init__(self) -> None:
        super().__init__("down")

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        raise EngineError("http://localhost:8000/v1 is not reachable")


def test_a_failing_model_ends_the_question_not_the_session(library: StrategyLibrary) -> None:
    out = chat(library, ["What changed?", "/approve 2"], DownModel())
    assert out[1].startswith("The auditor model failed (http://localhost:8000/v1 is not")
    assert out[2] == "Strategy 2 is approved (version 2)."


def _db(db_url: str) -> list[str]:
    """``--db-url`` for the PostgreSQL case (the SQLite store is the workspace's own)."""
    return ["--db-url", db_url] if db_url.startswith("postgresql") else []


def test_agents_audit_command_reads_stdin(
    library: StrategyLibrary,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # open_library put agents.db and chroma/ right under tmp_path: the workspace layout.
    assert Workspace.resolve(tmp_path).db_path == tmp_path / "agents.db"
    monkeypatch.setattr("sys.stdin", io.StringIO("/list\n/approve 2 fine\n"))
    code = main(["audit", "--workspace", str(tmp_path), *_db(db_url), "--reviewer", "dana"])
    out = capsys.readouterr().out
    assert code == 0
    assert "#1 [proposed] v1 Customer asks for a refund" in out
    assert "Strategy 2 is approved (version 2)." in out
    assert "audit>" not in out  # no prompt when stdin is not a terminal
    store = Store.open(Workspace.resolve(tmp_path), url=_db(db_url)[-1] if _db(db_url) else None)
    reopened = StrategyLibrary.open(store, tmp_path / "chroma", "retail")
    assert reopened.get(2).status == "approved"
    assert reopened.events(actions=["approve"])[-1].actor == "reviewer:dana"


def test_agents_audit_names_the_existing_libraries_for_an_unknown_one(
    library: StrategyLibrary,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("/list\n"))
    code = main(["audit", "--workspace", str(tmp_path), *_db(db_url), "--library", "airline"])
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR
    assert err.strip() == "error: there is no strategy library 'airline' here; libraries: retail."
    assert library.events() == []  # nothing was logged for the unknown library
