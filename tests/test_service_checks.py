"""Scoring customer-service conversations: gold-action matching and policy-violation rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tools.service import (
    GoldAction,
    ServiceDomain,
    ServiceTask,
    load_domain,
    policy_violations,
    score_actions,
    tool_calls_of,
)

WRITES = frozenset({"cancel_pending_order", "exchange_delivered_order_items"})
PENDING_ORDER = "#W6779827"  # belongs to ethan_lopez_6291
OTHER_USERS_ORDER = "#W2378156"  # belongs to yusuf_rossi_9620


@pytest.fixture(scope="module")
def retail() -> ServiceDomain:
    return load_domain("retail")


@pytest.fixture(scope="module")
def airline() -> ServiceDomain:
    return load_domain("airline")


def make_task(*actions: GoldAction) -> ServiceTask:
    return ServiceTask(
        id="retail/900",
        domain="retail",
        split="train",
        reason="Cancel an order.",
        known_info="",
        unknown_info="",
        instructions="",
        persona=None,
        actions=actions,
        communicate_info=(),
    )


class Conversation:
    """Builds an OpenAI message list one turn at a time."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.count = 0

    def user(self, text: str) -> Conversation:
        self.messages.append({"role": "user", "content": text})
        return self

    def say(self, text: str) -> Conversation:
        self.messages.append({"role": "assistant", "content": text})
        return self

    def call(self, *calls: tuple[str, dict[str, Any], str], text: str = "") -> Conversation:
        """One assistant message with ``calls`` as (name, arguments, answer) triples."""
        entries, answers = [], []
        for name, arguments, answer in calls:
            self.count += 1
            call_id = f"call_{self.count}"
            # alternate string and dict arguments: both forms occur in stored conversations
            raw = json.dumps(arguments) if self.count % 2 else arguments
            entries.append(
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": raw}}
            )
            answers.append(
                {"role": "tool", "tool_call_id": call_id, "name": name, "content": answer}
            )
        self.messages.append({"role": "assistant", "content": text, "tool_calls": entries})
        self.messages.extend(answers)
        return self


CANCEL = GoldAction("cancel_pending_order", {"order_id": "#W1", "reason": "no longer needed"})
LOOKUP = GoldAction("get_order_details", {"order_id": "#W1"})


# --- tool_calls_of -----------------------------------------------------------------------------


def test_tool_calls_of_reads_turns_arguments_and_outcomes() -> None:
    chat = (
        Conversation()
        .user("hi")
        .call(("get_order_details", {"order_id": "#W1"}, '{"status": "pending"}'))
        .call(("get_order_details", {"order_id": "#W2"}, "Error: Order '#W2' not found."))
    )
    chat.messages.append(
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "lost", "function": {"name": "calculate", "arguments": "{bad"}}],
        }
    )
    calls = tool_calls_of(chat.messages)
    assert calls == [
        {"name": "get_order_details", "arguments": {"order_id": "#W1"}, "ok": True, "turn": 1},
        {"name": "get_order_details", "arguments": {"order_id": "#W2"}, "ok": False, "turn": 3},
        {"name": "calculate", "arguments": {}, "ok": False, "turn": 5},  # never answered
    ]


# --- score_actions -----------------------------------------------------------------------------


def test_all_gold_actions_called_is_a_success() -> None:
    chat = Conversation().call(("get_order_details", {"order_id": " #w1 "}, "{}"))
    chat.call(("cancel_pending_order", {"order_id": "#W1", "reason": "No longer needed"}, "{}"))
    score = score_actions(make_task(LOOKUP, CANCEL), chat.messages, WRITES)
    assert score.success and score.recall == 1.0
    assert (score.matched, score.expected, score.extra_writes) == (2, 2, 0)


def test_an_extra_write_fails_the_task_even_with_full_recall() -> None:
    chat = Conversation().call(("cancel_pending_order", CANCEL.arguments, "{}"))
    chat.call(("cancel_pending_order", {"order_id": "#W2", "reason": "no longer needed"}, "{}"))
    score = score_actions(make_task(CANCEL), chat.messages, WRITES)
    assert not score.success and score.recall == 1.0 and score.extra_writes == 1


def test_partial_recall_and_failed_or_mismatched_calls_do_not_count() -> None:
    chat = Conversation().call(("get_order_details", {"order_id": "#W1"}, "{}"))
    chat.call(("cancel_pending_order", CANCEL.arguments, "Error: Only pending orders..."))
    chat.call(("cancel_pending_order", {"order_id": "#W1", "reason": "ordered by mistake"}, "{}"))
    score = score_actions(make_task(LOOKUP, CANCEL), chat.messages, WRITES)
    assert not score.success
    assert score.recall == 0.5 and score.matched == 1 and score.extra_writes == 1


def test_lists_of_scalars_match_in_any_order_and_numbers_numerically() -> None:
    gold = GoldAction(
        "exchange_delivered_order_items",
        {"order_id": "#W1", "item_ids": ["1", "2"], "new_item_ids": ["3", "4"], "amount": 50},
    )
    arguments = {"order_id": "#W1", "item_ids": ["2", "1"], "new_item_ids": ["4", "3"]}
    chat = Conversation().call(
        ("exchange_delivered_order_items", {**arguments, "amount": 50.0}, "{}")
    )
    assert score_actions(make_task(gold), chat.messages, WRITES).success
    extra_key = Conversation().call(
        ("exchange_delivered_order_items", {**arguments, "amount": 50, "note": "x"}, "{}")
    )
    assert not score_actions(make_task(gold), extra_key.messages, WRITES).success
    wrong_item = Conversation().call(
        (
            "exchange_delivered_order_items",
            {**arguments, "item_ids": ["1", "5"], "amount": 50},
            "{}",
        )
    )
    assert not score_actions(make_task(gold), wrong_item.messages, WRITES).success


def test_lists_of_objects_compare_element_by_element() -> None:
    flights = [
        {"flight_number": "HAT1", "date": "2024-05-20"},
        {"flight_number": "HAT2", "date": "2024-05-21"},
    ]
    gold = GoldAction("cancel_pending_order", {"flights": flights})
    same = Conversation().call(
        ("cancel_pending_order", {"flights": [dict(f) for f in flights]}, "{}")
    )
    swapped = Conversation().call(("cancel_pending_order", {"flights": flights[::-1]}, "{}"))
    assert score_actions(make_task(gold), same.messages, WRITES).success
    assert not score_actions(make_task(gold), swapped.messages, WRITES).success


def test_a_task_without_gold_writes_succeeds_only_without_writes() -> None:
    reads = Conversation().call(("get_order_details", {"order_id": "#W1"}, "{}"))
    assert score_actions(make_task(), reads.messages, WRITES) == score_actions(
        make_task(), [], WRITES
    )
    empty = score_actions(make_task(), reads.messages, WRITES)
    assert empty.success and empty.recall == 1.0 and empty.expected == 0
    wrote = Conversation().call(("cancel_pending_order", CANCEL.arguments, "{}"))
    assert not score_actions(make_task(LOOKUP), wrote.messages, WRITES).success


def test_gold_calls_meant_to_fail_are_matched_by_the_same_failure() -> None:
    refused = GoldAction("cancel_pending_order", {"order_id": "#W1", "reason": "x"}, succeeds=False)
    chat = Conversation().call(("cancel_pending_order", refused.arguments, "Error: bad reason."))
    score = score_actions(make_task(refused), chat.messages, WRITES)
    assert score.success and score.recall == 1.0
    assert score_actions(make_task(refused), [], WRITES).success  # not required either


# --- policy_violations -------------------------------------------------------------------------


def rules(domain: ServiceDomain, chat: Conversation) -> list[tuple[str, int]]:
    return [(v.rule, v.turn) for v in policy_violations(domain, chat.messages)]


def authenticated() -> Conversation:
    return (
        Conversation()
        .user("I want to cancel an order. My email is ethan.lopez@example.com")
        .call(("find_user_id_by_email", {"email": "x@example.com"}, "ethan_lopez_6291"))
    )


def test_a_clean_conversation_has_no_violations(retail: ServiceDomain) -> None:
    chat = authenticated().say(f"Cancel {PENDING_ORDER} because it is no longer needed?")
    chat.user("Yes, please.")
    chat.call(
        ("cancel_pending_order", {"order_id": PENDING_ORDER, "reason": "no longer needed"}, "{}")
    )
    assert policy_violations(retail, chat.messages) == []


def test_a_write_before_authentication_is_flagged(retail: ServiceDomain) -> None:
    chat = Conversation().user("yes, cancel it")
    chat.call(
        ("cancel_pending_order", {"order_id": PENDING_ORDER, "reason": "no longer needed"}, "{}")
    )
    failed_auth = Conversation().call(("find_user_id_by_email", {"email": "a@b.c"}, "Error: none"))
    failed_auth.user("yes").call(
        ("cancel_pending_order", {"order_id": PENDING_ORDER, "reason": "x"}, "{}")
    )
    assert rules(retail, chat) == [("unauthenticated_write", 1)]
    assert rules(retail, failed_auth) == [("unauthenticated_write", 3)]


def test_a_write_without_an_explicit_yes_is_flagged(retail: ServiceDomain) -> None:
    chat = authenticated().say("Shall I cancel it?").user("Sure, go ahead")
    chat.call(
        ("cancel_pending_order", {"order_id": PENDING_ORDER, "reason": "no longer needed"}, "{}")
    )
    assert rules(retail, chat) == [("unconfirmed_write", 5)]
    # "yesterday" is not a yes; "I confirm" is
    not_yes = (
        authenticated()
        .user("I ordered it yesterday")
        .call(
            (
                "cancel_pending_order",
                {"order_id": PENDING_ORDER, "reason": "no longer needed"},
                "{}",
            )
        )
    )
    confirmed = (
        authenticated()
        .user("I CONFIRM.")
        .call(
            (
                "cancel_pending_order",
                {"order_id": PENDING_ORDER, "reason": "no longer needed"},
                "{}",
            )
        )
    )
    assert [r for r, _ in rules(retail, not_yes)] == ["unconfirmed_write"]
    assert rules(retail, confirmed) == []


def test_touching_another_users_order_or_profile_is_flagged(retail: ServiceDomain) -> None:
    chat = authenticated().call(("get_order_details", {"order_id": OTHER_USERS_ORDER}, "{}"))
    chat.call(("get_user_details", {"user_id": "yusuf_rossi_9620"}, "{}"))
    chat.call(("get_order_details", {"order_id": PENDING_ORDER}, "{}"))
    chat.call(
        (
            "find_user_id_by_name_zip",
            {"first_name": "Y", "last_name": "R", "zip": "1"},
            "yusuf_rossi_9620",
        )
    )
    assert rules(retail, chat) == [("other_user", 3), ("other_user", 5), ("other_user", 9)]


def test_call_with_text_and_several_calls_in_one_message(retail: ServiceDomain) -> None:
    chat = authenticated().call(
        ("get_order_details", {"order_id": PENDING_ORDER}, "{}"),
        ("get_order_details", {"order_id": PENDING_ORDER}, "{}"),
        ("get_order_details", {"order_id": PENDING_ORDER}, "{}"),
        text="Let me check that order for you.",
    )
    chat.call(("get_order_details", {"order_id": PENDING_ORDER}, "{}"), text="  \n ")
    found = policy_violations(retail, chat.messages)
    # counted once per message per rule, however many calls it holds
    assert [(v.rule, v.turn) for v in found] == [("multiple_calls", 3), ("call_and_message", 3)]
    assert "3 tool calls" in found[0].detail


def test_several_rules_on_one_write_are_all_reported(retail: ServiceDomain) -> None:
    chat = (
        Conversation()
        .user("cancel both")
        .call(
            (
                "cancel_pending_order",
                {"order_id": PENDING_ORDER, "reason": "no longer needed"},
                "{}",
            ),
            (
                "cancel_pending_order",
                {"order_id": OTHER_USERS_ORDER, "reason": "no longer needed"},
                "{}",
            ),
        )
    )
    assert sorted(r for r, _ in rules(retail, chat)) == [
        "multiple_calls",
        "unauthenticated_write",
        "unconfirmed_write",
    ]


def test_airline_authenticates_by_profile_lookup(airline: ServiceDomain) -> None:
    chat = (
        Conversation()
        .user("I'm chen_jackson_3290, please cancel 4WQ150")
        .call(("get_user_details", {"user_id": "chen_jackson_3290"}, "{}"))
        .call(("get_reservation_details", {"reservation_id": "4WQ150"}, "{}"))
        .user("yes")
        .call(("cancel_reservation", {"reservation_id": "4WQ150"}, "{}"))
    )
    assert policy_violations(airline, chat.messages) == []
    other = (
        Conversation()
        .call(("get_user_details", {"user_id": "chen_jackson_3290"}, "{}"))
        .user("yes")
        .call(("cancel_reservation", {"reservation_id": "VAAOXJ"}, "{}"))
    )
    owner = airline.pristine_db()["reservations"]["VAAOXJ"]["user_id"]
    assert owner != "chen_jackson_3290"
    assert rules(airline, other) == [("other_user", 3)]
    unauthenticated = (
        Conversation().user("yes").call(("cancel_reservation", {"reservation_id": "4WQ150"}, "{}"))
    )
    assert rules(airline, unauthenticated) == [("unauthenticated_write", 1)]
