"""The retail agent's tools: look up users, orders and products; cancel, modify, return, exchange.

Every tool reads and changes the episode database, held by the ``DomainState`` in its
``ToolContext`` (a dict with ``users``, ``orders`` and ``products``, keyed by id). The write
tools enforce the rules the policy says the system itself checks: order status (cancel and modify
only pending orders, return and exchange only delivered ones), the two accepted cancellation
reasons, item variants of the same product that are available, payment methods the user owns,
and gift-card balances. Rules the policy leaves to the agent (authentication, explicit
confirmation, one user per conversation) are not enforced here; ``tools.service.checks`` flags
their violations.

Money moves the way the policy describes: refunds to a gift card raise its balance at once, other
refunds are only recorded in the order's payment history.
"""

from __future__ import annotations

from typing import Any

from tools.base import Tool, ToolContext, ToolError, tool
from tools.service.common import calculate, db_of, transfer_to_human_agents

CANCEL_REASONS = ("no longer needed", "ordered by mistake")


def _user(db: dict[str, Any], user_id: str) -> dict[str, Any]:
    user = db["users"].get(user_id.strip())
    if user is None:
        raise ToolError(f"User {user_id!r} not found.")
    return user


def _order(db: dict[str, Any], order_id: str) -> dict[str, Any]:
    order_id = order_id.strip()
    order = db["orders"].get(order_id) or db["orders"].get(f"#{order_id}")
    if order is None:
        raise ToolError(f"Order {order_id!r} not found; order ids look like '#W0000000'.")
    return order


def _payment_method(db: dict[str, Any], user_id: str, payment_method_id: str) -> dict[str, Any]:
    method = _user(db, user_id)["payment_methods"].get(payment_method_id.strip())
    if method is None:
        raise ToolError(f"Payment method {payment_method_id!r} not found for user {user_id!r}.")
    return method


def _variant(db: dict[str, Any], product_id: str, item_id: str) -> dict[str, Any]:
    variant = db["products"][product_id]["variants"].get(item_id)
    if variant is None:
        name = db["products"][product_id]["name"]
        raise ToolError(f"Item {item_id!r} is not a variant of the same product ({name}).")
    return variant


def _check_items_in_order(order: dict[str, Any], item_ids: list[str]) -> None:
    # The same item id may appear twice in an order (two units), so compare counts.
    ordered = [item["item_id"] for item in order["items"]]
    for item_id in set(item_ids):
        if item_ids.count(item_id) > ordered.count(item_id):
            raise ToolError(f"Item {item_id!r} is not in order {order['order_id']} often enough.")


def _price_difference(
    db: dict[str, Any],
    order: dict[str, Any],
    item_ids: list[str],
    new_item_ids: list[str],
    allow_same: bool,
) -> float:
    """Total price of the new items minus the old ones, checking each swap is allowed.

    An exchange may ask for the very same variant (a replacement for a faulty unit); a
    modification of a pending order may not, since it would change nothing.
    """
    if len(item_ids) != len(new_item_ids):
        raise ToolError("item_ids and new_item_ids must have the same length.")
    difference = 0.0
    for item_id, new_item_id in zip(item_ids, new_item_ids, strict=True):
        if item_id == new_item_id and not allow_same:
            raise ToolError(f"New item {new_item_id!r} is the same as the old one.")
        item = next(i for i in order["items"] if i["item_id"] == item_id)
        variant = _variant(db, item["product_id"], new_item_id)
        if not variant["available"]:
            raise ToolError(f"New item {new_item_id!r} is not available.")
        difference += variant["price"] - item["price"]
    return round(difference, 2)


def _check_gift_card(method: dict[str, Any], amount: float) -> None:
    if method["source"] == "gift_card" and method["balance"] < amount:
        raise ToolError(f"Gift card balance {method['balance']} does not cover {amount}.")


def _address(
    address1: str, address2: str, city: str, state: str, country: str, zip: str
) -> dict[str, str]:
    return {
        "address1": address1,
        "address2": address2,
        "city": city,
        "country": country,
        "state": state,
        "zip": zip,
    }


# --- read tools --------------------------------------------------------------------------------


@tool
def find_user_id_by_email(email: str, context: ToolContext) -> str:
    """Find a user's id by email address.

    Args:
        email: The email address, e.g. 'jane.doe1234@example.com'.
    """
    wanted = email.strip().lower()
    for user_id, user in db_of(context)["users"].items():
        if user["email"].lower() == wanted:
            return user_id
    raise ToolError("No user has that email address.")


@tool
def find_user_id_by_name_zip(
    first_name: str, last_name: str, zip: str, context: ToolContext
) -> str:
    """Find a user's id by first name, last name and zip code.

    Args:
        first_name: The first name, e.g. 'Jane'.
        last_name: The last name, e.g. 'Doe'.
        zip: The zip code, e.g. '12345'.
    """
    first, last = first_name.strip().lower(), last_name.strip().lower()
    for user_id, user in db_of(context)["users"].items():
        name = user["name"]
        if (
            name["first_name"].lower() == first
            and name["last_name"].lower() == last
            and user["address"]["zip"] == zip.strip()
        ):
            return user_id
    raise ToolError("No user matches that name and zip code.")


@tool
def get_user_details(user_id: str, context: ToolContext) -> dict[str, Any]:
    """Get a user's profile: name, address, email, payment methods and order ids.

    Args:
        user_id: The user id, e.g. 'jane_doe_1234'.
    """
    return _user(db_of(context), user_id)


@tool
def get_order_details(order_id: str, context: ToolContext) -> dict[str, Any]:
    """Get an order's status, items, address and payments.

    Args:
        order_id: The order id, e.g. '#W0000000' (with the leading '#').
    """
    return _order(db_of(context), order_id)


@tool
def get_product_details(product_id: str, context: ToolContext) -> dict[str, Any]:
    """Get a product type and all its item variants with options, price and availability.

    Args:
        product_id: The product id (not an item id), e.g. '6086499569'.
    """
    product = db_of(context)["products"].get(product_id.strip())
    if product is None:
        raise ToolError(f"Product {product_id!r} not found; item ids are not product ids.")
    return product


@tool
def list_all_product_types(context: ToolContext) -> dict[str, str]:
    """List every product type name with its product id."""
    products = db_of(context)["products"].values()
    return {p["name"]: p["product_id"] for p in sorted(products, key=lambda p: p["name"])}


# --- write tools -------------------------------------------------------------------------------


@tool
def cancel_pending_order(order_id: str, reason: str, context: ToolContext) -> dict[str, Any]:
    """Cancel a pending order. Needs the user's explicit confirmation first.

    Args:
        order_id: The order id, e.g. '#W0000000'.
        reason: Either 'no longer needed' or 'ordered by mistake'.
    """
    db = db_of(context)
    order = _order(db, order_id)
    if order["status"] != "pending":
        raise ToolError(f"Only pending orders can be cancelled; this one is {order['status']}.")
    reason = reason.strip().lower()
    if reason not in CANCEL_REASONS:
        raise ToolError("The reason must be 'no longer needed' or 'ordered by mistake'.")
    refunds = []
    for payment in order["payment_history"]:
        method = _payment_method(db, order["user_id"], payment["payment_method_id"])
        if method["source"] == "gift_card":  # gift cards are refunded at once
            method["balance"] = round(method["balance"] + payment["amount"], 2)
        refunds.append({**payment, "transaction_type": "refund"})
    order["payment_history"].extend(refunds)
    order["status"] = "cancelled"
    order["cancel_reason"] = reason
    return order


@tool
def modify_pending_order_address(
    order_id: str,
    address1: str,
    address2: str,
    city: str,
    state: str,
    country: str,
    zip: str,
    context: ToolContext,
) -> dict[str, Any]:
    """Change the shipping address of a pending order. Needs explicit confirmation first.

    Args:
        order_id: The order id, e.g. '#W0000000'.
        address1: Street line, e.g. '123 Main St'.
        address2: Second line, e.g. 'Apt 1' (may be empty).
        city: The city.
        state: The state, e.g. 'NY'.
        country: The country, e.g. 'USA'.
        zip: The zip code.
    """
    order = _order(db_of(context), order_id)
    if "pending" not in order["status"]:
        raise ToolError(f"Only pending orders can be modified; this one is {order['status']}.")
    order["address"] = _address(address1, address2, city, state, country, zip)
    return order


@tool
def modify_pending_order_payment(
    order_id: str, payment_method_id: str, context: ToolContext
) -> dict[str, Any]:
    """Pay a pending order with another of the user's payment methods. Needs confirmation first.

    Args:
        order_id: The order id, e.g. '#W0000000'.
        payment_method_id: The new payment method id, e.g. 'credit_card_0000000'.
    """
    db = db_of(context)
    order = _order(db, order_id)
    if "pending" not in order["status"]:
        raise ToolError(f"Only pending orders can be modified; this one is {order['status']}.")
    history = order["payment_history"]
    if len(history) != 1 or history[0]["transaction_type"] != "payment":
        raise ToolError("The payment of this order has already been changed.")
    old_id, amount = history[0]["payment_method_id"], history[0]["amount"]
    if payment_method_id.strip() == old_id:
        raise ToolError("The new payment method must differ from the current one.")
    new_method = _payment_method(db, order["user_id"], payment_method_id)
    _check_gift_card(new_method, amount)
    history.append(
        {"transaction_type": "payment", "amount": amount, "payment_method_id": new_method["id"]}
    )
    history.append({"transaction_type": "refund", "amount": amount, "payment_method_id": old_id})
    if new_method["source"] == "gift_card":
        new_method["balance"] = round(new_method["balance"] - amount, 2)
    old_method = _payment_method(db, order["user_id"], old_id)
    if old_method["source"] == "gift_card":
        old_method["balance"] = round(old_method["balance"] + amount, 2)
    return order


@tool
def modify_pending_order_items(
    order_id: str,
    item_ids: list[str],
    new_item_ids: list[str],
    payment_method_id: str,
    context: ToolContext,
) -> dict[str, Any]:
    """Swap items of a pending order for other variants of the same products. Only once per order.

    Args:
        order_id: The order id, e.g. '#W0000000'.
        item_ids: The item ids to replace.
        new_item_ids: The new item ids, in the same order as item_ids.
        payment_method_id: Payment method that pays or receives the price difference.
    """
    db = db_of(context)
    order = _order(db, order_id)
    if order["status"] != "pending":
        raise ToolError(f"Only pending orders can be modified; this one is {order['status']}.")
    _check_items_in_order(order, item_ids)
    difference = _price_difference(db, order, item_ids, new_item_ids, allow_same=False)
    method = _payment_method(db, order["user_id"], payment_method_id)
    _check_gift_card(method, difference)
    order["payment_history"].append(
        {
            "transaction_type": "payment" if difference > 0 else "refund",
            "amount": abs(difference),
            "payment_method_id": method["id"],
        }
    )
    if method["source"] == "gift_card":
        method["balance"] = round(method["balance"] - difference, 2)
    replaced: set[int] = set()  # positions already swapped, for duplicate item ids
    for item_id, new_item_id in zip(item_ids, new_item_ids, strict=True):
        position = next(
            n
            for n, item in enumerate(order["items"])
            if item["item_id"] == item_id and n not in replaced
        )
        replaced.add(position)
        item = order["items"][position]
        variant = _variant(db, item["product_id"], new_item_id)
        item.update(item_id=new_item_id, price=variant["price"], options=dict(variant["options"]))
    order["status"] = "pending (item modified)"
    return order


@tool
def return_delivered_order_items(
    order_id: str, item_ids: list[str], payment_method_id: str, context: ToolContext
) -> dict[str, Any]:
    """Request a return of items of a delivered order. Needs explicit confirmation first.

    Args:
        order_id: The order id, e.g. '#W0000000'.
        item_ids: The item ids to return.
        payment_method_id: Refund target: the original payment method or a gift card.
    """
    db = db_of(context)
    order = _order(db, order_id)
    if order["status"] != "delivered":
        raise ToolError(f"Only delivered orders can be returned; this one is {order['status']}.")
    method = _payment_method(db, order["user_id"], payment_method_id)
    original = order["payment_history"][0]["payment_method_id"]
    if method["source"] != "gift_card" and method["id"] != original:
        raise ToolError("The refund must go to the original payment method or a gift card.")
    _check_items_in_order(order, item_ids)
    order["status"] = "return requested"
    order["return_items"] = sorted(item_ids)
    order["return_payment_method_id"] = method["id"]
    return order


@tool
def exchange_delivered_order_items(
    order_id: str,
    item_ids: list[str],
    new_item_ids: list[str],
    payment_method_id: str,
    context: ToolContext,
) -> dict[str, Any]:
    """Request an exchange of delivered items for other variants of the same products.

    Args:
        order_id: The order id, e.g. '#W0000000'.
        item_ids: The item ids to exchange.
        new_item_ids: The new item ids, in the same order as item_ids.
        payment_method_id: Payment method that pays or receives the price difference.
    """
    db = db_of(context)
    order = _order(db, order_id)
    if order["status"] != "delivered":
        raise ToolError(f"Only delivered orders can be exchanged; this one is {order['status']}.")
    _check_items_in_order(order, item_ids)
    difference = _price_difference(db, order, item_ids, new_item_ids, allow_same=True)
    method = _payment_method(db, order["user_id"], payment_method_id)
    _check_gift_card(method, difference)
    # The money moves when the returned items arrive, so only the request is recorded.
    order["status"] = "exchange requested"
    order["exchange_items"] = sorted(item_ids)
    order["exchange_new_items"] = sorted(new_item_ids)
    order["exchange_payment_method_id"] = method["id"]
    order["exchange_price_difference"] = difference
    return order


@tool
def modify_user_address(
    user_id: str,
    address1: str,
    address2: str,
    city: str,
    state: str,
    country: str,
    zip: str,
    context: ToolContext,
) -> dict[str, Any]:
    """Change a user's default address. Needs explicit confirmation first.

    Args:
        user_id: The user id, e.g. 'jane_doe_1234'.
        address1: Street line, e.g. '123 Main St'.
        address2: Second line, e.g. 'Apt 1' (may be empty).
        city: The city.
        state: The state, e.g. 'NY'.
        country: The country, e.g. 'USA'.
        zip: The zip code.
    """
    user = _user(db_of(context), user_id)
    user["address"] = _address(address1, address2, city, state, country, zip)
    return user


TOOLS: list[Tool] = [
    find_user_id_by_email,
    find_user_id_by_name_zip,
    get_user_details,
    get_order_details,
    get_product_details,
    list_all_product_types,
    calculate,
    transfer_to_human_agents,
    cancel_pending_order,
    modify_pending_order_address,
    modify_pending_order_payment,
    modify_pending_order_items,
    return_delivered_order_items,
    exchange_delivered_order_items,
    modify_user_address,
]
WRITE_TOOLS = frozenset(
    {
        "cancel_pending_order",
        "modify_pending_order_address",
        "modify_pending_order_payment",
        "modify_pending_order_items",
        "return_delivered_order_items",
        "exchange_delivered_order_items",
        "modify_user_address",
    }
)
AUTH_TOOLS = frozenset({"find_user_id_by_email", "find_user_id_by_name_zip"})
