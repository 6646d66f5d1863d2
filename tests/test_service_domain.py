"""The customer-service domains: loading, tools over the database, gold-action replay."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from tools.base import ToolContext, ToolError, call_tool
from tools.service import (
    DOMAINS,
    DomainState,
    DomainUnavailable,
    ServiceDomain,
    load_domain,
    score_actions,
)
from tools.service.common import calculate

RETAIL_TOOLS = [
    "find_user_id_by_email",
    "find_user_id_by_name_zip",
    "get_user_details",
    "get_order_details",
    "get_product_details",
    "list_all_product_types",
    "calculate",
    "transfer_to_human_agents",
    "cancel_pending_order",
    "modify_pending_order_address",
    "modify_pending_order_payment",
    "modify_pending_order_items",
    "return_delivered_order_items",
    "exchange_delivered_order_items",
    "modify_user_address",
]
AIRLINE_TOOLS = [
    "get_user_details",
    "get_reservation_details",
    "search_direct_flight",
    "search_onestop_flight",
    "list_all_airports",
    "calculate",
    "transfer_to_human_agents",
    "book_reservation",
    "cancel_reservation",
    "update_reservation_baggages",
    "update_reservation_flights",
    "update_reservation_passengers",
    "send_certificate",
]
PENDING_GIFT_CARD_ORDER = "#W6779827"  # ethan_lopez_6291, paid 4079.45 by gift_card_7219486
DELIVERED_ORDER = "#W4817420"  # ava_moore_2033, paid by gift_card_8168843


@pytest.fixture(scope="module")
def retail() -> ServiceDomain:
    return load_domain("retail")


@pytest.fixture(scope="module")
def airline() -> ServiceDomain:
    return load_domain("airline")


def run(domain: ServiceDomain, context: ToolContext, name: str, **arguments: Any) -> str:
    """Call a tool the way an agent would and return the observation text."""
    call = {"id": "c", "type": "function", "function": {"name": name, "arguments": arguments}}
    return call_tool(call, domain.tools, context)["content"]


def tool_fn(domain: ServiceDomain, name: str) -> Any:
    return next(t for t in domain.tools if t.name == name).fn


def replay(domain: ServiceDomain, task_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Replay a task's gold actions on a fresh database: (messages, error observations)."""
    context = domain.tool_context()
    messages: list[dict[str, Any]] = []
    errors = []
    for n, action in enumerate(domain.task(task_id).actions):
        call = {
            "id": f"g{n}",
            "type": "function",
            "function": {"name": action.name, "arguments": json.dumps(action.arguments)},
        }
        answer = call_tool(call, domain.tools, context)
        messages += [{"role": "assistant", "content": "", "tool_calls": [call]}, answer]
        if answer["content"].startswith("Error"):
            errors.append(answer["content"])
    return messages, errors


# --- loading -----------------------------------------------------------------------------------


def test_retail_loads_with_its_splits_and_tools(retail: ServiceDomain) -> None:
    assert len(retail.split("train")) == 74
    assert len(retail.split("test")) == 40
    assert len(retail.tasks) == 114
    assert [t.name for t in retail.tools] == RETAIL_TOOLS
    assert retail.write_tools < set(RETAIL_TOOLS)
    assert retail.auth_tools == {"find_user_id_by_email", "find_user_id_by_name_zip"}
    assert "Retail agent policy" in retail.policy
    train_ids = [int(t.id.split("/")[1]) for t in retail.split("train")]
    assert train_ids == sorted(train_ids)
    assert retail.task("retail/0").split == "train"
    assert retail.task("0") is retail.task("retail/0")


def test_airline_loads_with_its_splits_and_tools(airline: ServiceDomain) -> None:
    assert len(airline.split("train")) == 30
    assert len(airline.split("test")) == 20
    assert [t.name for t in airline.tools] == AIRLINE_TOOLS
    assert airline.auth_tools == {"get_user_details"}
    assert "book_reservation" in airline.write_tools
    assert "get_reservation_details" not in airline.write_tools


def test_load_is_cached_and_unknown_names_are_refused(retail: ServiceDomain) -> None:
    assert load_domain("retail") is retail
    with pytest.raises(ValueError, match="airline"):
        load_domain("telecom")
    with pytest.raises(KeyError):
        retail.task("retail/99999")
    with pytest.raises(ValueError, match="train"):
        retail.split("base")


def test_a_bad_data_dir_names_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(DomainUnavailable, match="pip install --no-deps inspect-evals==0.26.0"):
        load_domain("retail", data_dir=tmp_path / "nowhere")


def test_a_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "inspect_evals" else real(n, *a)
    )
    with pytest.raises(DomainUnavailable, match="pip install --no-deps inspect-evals"):
        load_domain("airline")


def test_schemas_hide_the_context_and_describe_every_argument(retail: ServiceDomain) -> None:
    schemas = {s["function"]["name"]: s["function"] for s in retail.schemas()}
    assert list(schemas) == RETAIL_TOOLS
    cancel = schemas["cancel_pending_order"]
    assert set(cancel["parameters"]["properties"]) == {"order_id", "reason"}
    assert "ordered by mistake" in cancel["parameters"]["properties"]["reason"]["description"]
    for function in schemas.values():
        assert "context" not in function["parameters"]["properties"]
        assert all(p.get("description") for p in function["parameters"]["properties"].values())


def test_customer_brief_is_prose_with_what_the_customer_knows(retail: ServiceDomain) -> None:
    task = retail.task("retail/0")
    brief = task.customer_brief()
    assert "#W2378156" in brief and "Yusuf Rossi" in brief and "email" in brief
    assert "{" not in brief and "known_info" not in brief
    assert task.summary().startswith("retail/0: You received your order")
    assert len(task.summary()) <= len("retail/0: ") + 103


def write_fixture(root: Path) -> None:
    """A hand-written retail domain: one user, two orders, one product, three tasks."""
    folder = root / "retail"
    folder.mkdir(parents=True)
    (folder / "policy.txt").write_text("Be nice.")
    address = {"address1": "1 A St", "address2": "", "city": "X", "country": "USA"}
    db = {
        "users": {
            "ann_lee_1": {
                "user_id": "ann_lee_1",
                "name": {"first_name": "Ann", "last_name": "Lee"},
                "address": {**address, "state": "NY", "zip": "10001"},
                "email": "ann@example.com",
                "payment_methods": {
                    "gift_card_1": {"source": "gift_card", "id": "gift_card_1", "balance": 5.0}
                },
                "orders": ["#W1"],
            }
        },
        "orders": {
            "#W1": {
                "order_id": "#W1",
                "user_id": "ann_lee_1",
                "address": {**address, "state": "NY", "zip": "10001"},
                "items": [{"name": "Mug", "product_id": "p1", "item_id": "i1", "price": 10.0}],
                "status": "pending",
                "fulfillments": [],
                "payment_history": [
                    {
                        "transaction_type": "payment",
                        "amount": 10.0,
                        "payment_method_id": "gift_card_1",
                    }
                ],
            }
        },
        "products": {"p1": {"name": "Mug", "product_id": "p1", "variants": {}}},
    }
    (folder / "db.json").write_text(json.dumps(db))

    def task(task_id: str, actions: list[dict[str, Any]]) -> dict[str, Any]:
        instructions = {
            "reason_for_call": f"Reason {task_id}.",
            "known_info": "You are Ann Lee.",
            "unknown_info": None,
            "task_instructions": "Be brief.",
            "domain": "retail",
        }
        return {
            "id": task_id,
            "user_scenario": {"persona": "Calm.", "instructions": instructions},
            "evaluation_criteria": {"actions": actions, "communicate_info": ["10.0"]},
        }

    cancel = {"name": "cancel_pending_order", "arguments": {"order_id": "#W1", "reason": "x"}}
    lookup = {"name": "find_user_id_by_email", "arguments": {"email": "ann@example.com"}}
    tasks = [task("10", [lookup]), task("2", [cancel]), task("3", [])]
    (folder / "tasks.json").write_text(json.dumps(tasks))
    (folder / "split_tasks.json").write_text(json.dumps({"train": ["10", "2"], "test": []}))


def test_a_fixture_dir_loads_in_id_order_and_marks_failing_gold(tmp_path: Path) -> None:
    write_fixture(tmp_path)
    domain = load_domain("retail", data_dir=tmp_path)
    assert [t.id for t in domain.split("train")] == ["retail/2", "retail/10"]
    assert domain.split("test") == []  # task 3 has no split and is left out
    assert [t.id for t in domain.tasks] == ["retail/2", "retail/10"]
    lookup = domain.task("10")
    assert lookup.persona == "Calm." and lookup.communicate_info == ("10.0",)
    assert lookup.unknown_info == ""
    assert lookup.actions[0].succeeds
    assert not domain.task("2").actions[0].succeeds  # "x" is not an accepted reason
    # the failed gold write must not have touched the pristine database
    assert domain.fresh_db()["orders"]["#W1"]["status"] == "pending"
    context = domain.tool_context()
    assert (
        run(
            domain,
            context,
            "find_user_id_by_name_zip",
            first_name="ann",
            last_name="LEE",
            zip="10001",
        )
        == "ann_lee_1"
    )


# --- retail tools ------------------------------------------------------------------------------


def test_retail_lookups(retail: ServiceDomain) -> None:
    context = retail.tool_context()
    assert run(retail, context, "find_user_id_by_email", email="Yusuf.Rossi7301@example.com") == (
        "yusuf_rossi_9620"
    )
    assert (
        run(
            retail,
            context,
            "find_user_id_by_name_zip",
            first_name="Yusuf",
            last_name="Rossi",
            zip="19122",
        )
        == "yusuf_rossi_9620"
    )
    assert run(retail, context, "find_user_id_by_email", email="nobody@example.com").startswith(
        "Error"
    )
    order = json.loads(run(retail, context, "get_order_details", order_id="#W2378156"))
    assert order["user_id"] == "yusuf_rossi_9620" and order["status"] == "delivered"
    products = json.loads(run(retail, context, "list_all_product_types"))
    assert len(products) == 50 and products["T-Shirt"] == "9523456873"
    assert "not found" in run(retail, context, "get_product_details", product_id="123")


def test_cancel_checks_reason_and_status_and_refunds_gift_cards(retail: ServiceDomain) -> None:
    context = retail.tool_context()
    cancel = tool_fn(retail, "cancel_pending_order")
    with pytest.raises(ToolError, match="no longer needed"):
        cancel(order_id=PENDING_GIFT_CARD_ORDER, reason="found it cheaper", context=context)
    order = cancel(order_id=PENDING_GIFT_CARD_ORDER, reason="Ordered by mistake", context=context)
    assert order["status"] == "cancelled" and order["cancel_reason"] == "ordered by mistake"
    assert order["payment_history"][-1]["transaction_type"] == "refund"
    user = context.require(DomainState).db["users"]["ethan_lopez_6291"]
    card = user["payment_methods"]["gift_card_7219486"]
    assert card["balance"] == round(49.0 + 4079.45, 2)
    with pytest.raises(ToolError, match="pending"):
        cancel(order_id=PENDING_GIFT_CARD_ORDER, reason="no longer needed", context=context)
    observation = run(
        retail, context, "cancel_pending_order", order_id="#W0", reason="no longer needed"
    )
    assert observation.startswith("Error") and "not found" in observation


def test_fresh_databases_are_isolated(retail: ServiceDomain) -> None:
    first, second = retail.tool_context(), retail.tool_context()
    run(
        retail,
        first,
        "cancel_pending_order",
        order_id=PENDING_GIFT_CARD_ORDER,
        reason="no longer needed",
    )
    assert first.require(DomainState).db["orders"][PENDING_GIFT_CARD_ORDER]["status"] == "cancelled"
    assert second.require(DomainState).db["orders"][PENDING_GIFT_CARD_ORDER]["status"] == "pending"
    assert retail.fresh_db()["orders"][PENDING_GIFT_CARD_ORDER]["status"] == "pending"
    assert retail.pristine_db()["orders"][PENDING_GIFT_CARD_ORDER]["status"] == "pending"


def test_return_and_exchange_need_a_delivered_order(retail: ServiceDomain) -> None:
    context = retail.tool_context()
    return_items = tool_fn(retail, "return_delivered_order_items")
    exchange = tool_fn(retail, "exchange_delivered_order_items")
    with pytest.raises(ToolError, match="delivered"):
        return_items(
            order_id=PENDING_GIFT_CARD_ORDER,
            item_ids=[],
            payment_method_id="gift_card_7219486",
            context=context,
        )
    with pytest.raises(ToolError, match="delivered"):
        exchange(
            order_id=PENDING_GIFT_CARD_ORDER,
            item_ids=[],
            new_item_ids=[],
            payment_method_id="gift_card_7219486",
            context=context,
        )


def test_exchange_swaps_variants_of_the_same_product_only(retail: ServiceDomain) -> None:
    context = retail.tool_context()
    exchange = tool_fn(retail, "exchange_delivered_order_items")
    with pytest.raises(ToolError, match="same product"):  # a bookshelf is not a water bottle
        exchange(
            order_id=DELIVERED_ORDER,
            item_ids=["6777246137"],
            new_item_ids=["8479046075"],
            payment_method_id="gift_card_8168843",
            context=context,
        )
    with pytest.raises(ToolError, match="not available"):
        exchange(
            order_id=DELIVERED_ORDER,
            item_ids=["6777246137"],
            new_item_ids=["1434748144"],
            payment_method_id="gift_card_8168843",
            context=context,
        )
    order = exchange(
        order_id=DELIVERED_ORDER,
        item_ids=["6777246137"],
        new_item_ids=["4579334072"],
        payment_method_id="gift_card_8168843",
        context=context,
    )
    assert order["status"] == "exchange requested"
    assert order["exchange_price_difference"] == round(54.85 - 47.76, 2)
    with pytest.raises(ToolError, match="delivered"):  # one exchange per order
        exchange(
            order_id=DELIVERED_ORDER,
            item_ids=["4900661478"],
            new_item_ids=["8895454203"],
            payment_method_id="gift_card_8168843",
            context=context,
        )


def test_return_goes_to_the_original_method_or_a_gift_card(retail: ServiceDomain) -> None:
    context = retail.tool_context()
    # #W5490111 (mia_garcia_4516) was paid by credit_card_3124723; she also has PayPal
    arguments = {"order_id": "#W5490111", "item_ids": ["4579334072", "6117189161"]}
    refused = run(
        retail,
        context,
        "return_delivered_order_items",
        **arguments,
        payment_method_id="paypal_9497703",
    )
    assert refused.startswith("Error") and "original payment method" in refused
    result = json.loads(
        run(
            retail,
            context,
            "return_delivered_order_items",
            **arguments,
            payment_method_id="credit_card_3124723",
        )
    )
    assert result["status"] == "return requested"
    assert result["return_items"] == ["4579334072", "6117189161"]


def test_calculate_is_arithmetic_only() -> None:
    assert calculate.fn(expression="2 * ((350 - 122) + (499 - 127))") == "1200"
    assert calculate.fn(expression="10 / 4") == "2.5"
    with pytest.raises(ToolError, match="Only numbers"):
        calculate.fn(expression="__import__('os').system('true')")
    with pytest.raises(ToolError, match="Only numbers"):
        calculate.fn(expression="9 ** 9 ** 9")
    with pytest.raises(ToolError, match="zero"):
        calculate.fn(expression="1 / (2 - 2)")
    with pytest.raises(ToolError, match="not valid"):
        calculate.fn(expression="1 +")


# --- airline tools -----------------------------------------------------------------------------


def test_airline_reservation_lookup_and_cancel(airline: ServiceDomain) -> None:
    context = airline.tool_context()
    reservation = json.loads(
        run(airline, context, "get_reservation_details", reservation_id="4wq150")
    )
    assert reservation["user_id"] == "chen_jackson_3290" and "status" not in reservation
    cancelled = json.loads(run(airline, context, "cancel_reservation", reservation_id="4WQ150"))
    assert cancelled["status"] == "cancelled"
    assert cancelled["payment_history"][-1] == {"payment_id": "gift_card_3576581", "amount": -4986}
    assert "already cancelled" in run(
        airline, context, "cancel_reservation", reservation_id="4WQ150"
    )
    assert "status" not in airline.fresh_db()["reservations"]["4WQ150"]


def test_airline_search_and_booking_checks_the_total(airline: ServiceDomain) -> None:
    context = airline.tool_context()
    flights = json.loads(
        run(
            airline,
            context,
            "search_direct_flight",
            origin="JFK",
            destination="SFO",
            date="2024-05-20",
        )
    )
    assert flights and all(f["origin"] == "JFK" and f["destination"] == "SFO" for f in flights)
    pairs = json.loads(
        run(
            airline,
            context,
            "search_onestop_flight",
            origin="JFK",
            destination="SFO",
            date="2024-05-20",
        )
    )
    assert all(a["destination"] == b["origin"] for a, b in pairs)
    flight = flights[0]
    price = flight["prices"]["economy"]
    arguments = {
        "user_id": "chen_jackson_3290",
        "origin": "JFK",
        "destination": "SFO",
        "flight_type": "one_way",
        "cabin": "economy",
        "flights": [{"flight_number": flight["flight_number"], "date": "2024-05-20"}],
        "passengers": [{"first_name": "Chen", "last_name": "Jackson", "dob": "1956-07-07"}],
        "payment_methods": [{"payment_id": "gift_card_3576581", "amount": price + 1}],
        "total_baggages": 0,
        "nonfree_baggages": 0,
        "insurance": "no",
    }
    assert "add up" in run(airline, context, "book_reservation", **arguments)
    arguments["payment_methods"][0]["amount"] = price
    booked = json.loads(run(airline, context, "book_reservation", **arguments))
    assert booked["reservation_id"] == "HATHAT"
    db = context.require(DomainState).db
    assert "HATHAT" in db["users"]["chen_jackson_3290"]["reservations"]
    assert db["users"]["chen_jackson_3290"]["payment_methods"]["gift_card_3576581"]["amount"] == (
        245.0 - price
    )
    assert "must be one of" in run(
        airline, context, "book_reservation", **{**arguments, "cabin": "first"}
    )
    message = run(airline, context, "send_certificate", user_id="chen_jackson_3290", amount=100)
    assert "certificate_3221322" in message
    assert (
        db["users"]["chen_jackson_3290"]["payment_methods"]["certificate_3221322"]["amount"] == 100
    )


# --- gold actions ------------------------------------------------------------------------------


def test_every_retail_train_task_replays_to_success(retail: ServiceDomain) -> None:
    clean = 0
    for task in retail.split("train"):
        messages, errors = replay(retail, task.id)
        score = score_actions(task, messages, retail.write_tools)
        assert score.success and score.recall == 1.0, task.id
        # only the gold calls that are meant to fail (wrong email, unknown product...) fail
        assert len(errors) == sum(not a.succeeds for a in task.actions), task.id
        clean += not errors
    assert clean >= 62  # the other 12 contain deliberately failing gold calls


def test_every_airline_task_replays_without_errors(airline: ServiceDomain) -> None:
    for task in airline.tasks:
        messages, errors = replay(airline, task.id)
        assert errors == [], task.id
        assert score_actions(task, messages, airline.write_tools).success, task.id


def test_domains_constant_lists_both() -> None:
    assert DOMAINS == ("retail", "airline")
