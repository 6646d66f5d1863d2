"""The airline agent's tools: look up users, reservations and flights; book, change, cancel.

Every tool reads and changes the episode database, held by the ``DomainState`` in its
``ToolContext`` (a dict with ``users``, ``reservations`` and ``flights``, keyed by id). Like
τ²-bench's airline API, the write tools check only what the system can check by itself: flights
bookable on the date with enough seats, payment methods in the user's profile with enough
balance, a payment total that adds up, an unchanged passenger count. The policy rules the agent
must apply before calling them (who may cancel, basic economy flights cannot change, bags can
only be added...) are deliberately not enforced here, as the policy itself says. Seat counts drop
when a reservation is booked; flight changes and cancellations leave them as they are, as in
τ²-bench.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from tools.base import Tool, ToolContext, ToolError, tool
from tools.service.common import calculate, db_of, transfer_to_human_agents

Cabin = Literal["basic_economy", "economy", "business"]
NOW = "2024-05-15T15:00:00"  # the policy's "current time"; new reservations are created then
NEW_RESERVATION_IDS = ("HATHAT", "HATHAU", "HATHAV")
NEW_CERTIFICATE_IDS = ("certificate_3221322", "certificate_3221323", "certificate_3221324")
INSURANCE_PER_PASSENGER = 30
BAG_FEE = 50
_Record = dict[str, Any]
AIRPORTS = {
    "SFO": "San Francisco",
    "JFK": "New York",
    "LAX": "Los Angeles",
    "ORD": "Chicago",
    "DFW": "Dallas",
    "DEN": "Denver",
    "SEA": "Seattle",
    "ATL": "Atlanta",
    "MIA": "Miami",
    "BOS": "Boston",
    "PHX": "Phoenix",
    "IAH": "Houston",
    "LAS": "Las Vegas",
    "MCO": "Orlando",
    "EWR": "Newark",
    "CLT": "Charlotte",
    "MSP": "Minneapolis",
    "DTW": "Detroit",
    "PHL": "Philadelphia",
    "LGA": "LaGuardia",
}


def _user(db: dict[str, Any], user_id: str) -> dict[str, Any]:
    user = db["users"].get(user_id.strip())
    if user is None:
        raise ToolError(f"User {user_id!r} not found.")
    return user


def _reservation(db: dict[str, Any], reservation_id: str) -> dict[str, Any]:
    reservation = db["reservations"].get(reservation_id.strip().upper())
    if reservation is None:
        raise ToolError(f"Reservation {reservation_id!r} not found.")
    return reservation


def _flight_on(db: dict[str, Any], flight_number: str, date: str) -> tuple[_Record, _Record]:
    """The flight and its record for one date, raising if either does not exist."""
    flight = db["flights"].get(flight_number.strip().upper())
    if flight is None:
        raise ToolError(f"Flight {flight_number!r} not found.")
    day = flight["dates"].get(date.strip())
    if day is None:
        raise ToolError(f"Flight {flight_number} does not fly on {date}.")
    return flight, day


def _bookable(db: dict[str, Any], leg: Any, cabin: str, seats: int) -> tuple[_Record, _Record]:
    """The flight and date record of a leg that can take ``seats`` passengers in ``cabin``."""
    if not isinstance(leg, dict) or not {"flight_number", "date"} <= leg.keys():
        raise ToolError(
            "Each flight must look like {'flight_number': 'HAT001', 'date': 'YYYY-MM-DD'}."
        )
    flight, day = _flight_on(db, str(leg["flight_number"]), str(leg["date"]))
    if day["status"] != "available":
        raise ToolError(f"Flight {flight['flight_number']} on {leg['date']} is {day['status']}.")
    if day["available_seats"][cabin] < seats:
        raise ToolError(f"Flight {flight['flight_number']} has too few {cabin} seats left.")
    return flight, day


def _check_passengers(passengers: list[dict[str, Any]]) -> list[dict[str, str]]:
    keys = ("first_name", "last_name", "dob")
    for passenger in passengers:
        if not isinstance(passenger, dict) or not set(keys) <= passenger.keys():
            raise ToolError("Each passenger needs first_name, last_name and dob (YYYY-MM-DD).")
    return [{k: str(p[k]) for k in keys} for p in passengers]


def _charge_for_update(user: _Record, payment_id: str, amount: float) -> _Record | None:
    """Take ``amount`` (a refund when negative) from one payment method; the record or None."""
    method = user["payment_methods"].get(payment_id.strip())
    if method is None:
        raise ToolError(f"Payment method {payment_id!r} is not in the user's profile.")
    if method["source"] == "certificate":
        raise ToolError("A travel certificate cannot pay for a change to a reservation.")
    if method["source"] == "gift_card":
        if method["amount"] < amount:
            raise ToolError(f"Gift card balance {method['amount']} does not cover {amount}.")
        method["amount"] = round(method["amount"] - amount, 2)
    return {"payment_id": method["id"], "amount": amount} if amount else None


def _search(
    db: dict[str, Any],
    date: str,
    origin: str | None,
    destination: str | None,
    leave_after: str | None = None,
) -> list[dict[str, Any]]:
    found = []
    for flight in db["flights"].values():
        day = flight["dates"].get(date)
        if day is None or day["status"] != "available":
            continue
        if origin is not None and flight["origin"] != origin:
            continue
        if destination is not None and flight["destination"] != destination:
            continue
        if leave_after is not None and flight["scheduled_departure_time_est"] < leave_after:
            continue
        found.append(
            {
                "flight_number": flight["flight_number"],
                "origin": flight["origin"],
                "destination": flight["destination"],
                "date": date,
                "scheduled_departure_time_est": flight["scheduled_departure_time_est"],
                "scheduled_arrival_time_est": flight["scheduled_arrival_time_est"],
                "available_seats": day["available_seats"],
                "prices": day["prices"],
            }
        )
    return found


# --- read tools --------------------------------------------------------------------------------


@tool
def get_user_details(user_id: str, context: ToolContext) -> dict[str, Any]:
    """Get a user's profile: membership, payment methods, saved passengers, reservation ids.

    Args:
        user_id: The user id, e.g. 'sara_doe_496'.
    """
    return _user(db_of(context), user_id)


@tool
def get_reservation_details(reservation_id: str, context: ToolContext) -> dict[str, Any]:
    """Get a reservation: flights, cabin, passengers, payments, bags, insurance.

    Args:
        reservation_id: The reservation id, e.g. 'ZFA04Y'.
    """
    return _reservation(db_of(context), reservation_id)


@tool
def search_direct_flight(
    origin: str, destination: str, date: str, context: ToolContext
) -> list[dict[str, Any]]:
    """Find bookable direct flights between two airports on a date.

    Args:
        origin: Origin airport code, e.g. 'JFK'.
        destination: Destination airport code, e.g. 'LAX'.
        date: The date, 'YYYY-MM-DD'.
    """
    db = db_of(context)
    return _search(db, date.strip(), origin.strip().upper(), destination.strip().upper())


@tool
def search_onestop_flight(
    origin: str, destination: str, date: str, context: ToolContext
) -> list[list[dict[str, Any]]]:
    """Find bookable one-stop flight pairs between two airports, leaving on a date.

    Args:
        origin: Origin airport code, e.g. 'JFK'.
        destination: Destination airport code, e.g. 'LAX'.
        date: The date of the first flight, 'YYYY-MM-DD'.
    """
    db = db_of(context)
    date, destination = date.strip(), destination.strip().upper()
    pairs = []
    for first in _search(db, date, origin.strip().upper(), None):
        arrival = first["scheduled_arrival_time_est"]
        second_date = date
        if arrival.endswith("+1"):  # lands after midnight: the connection leaves the next day
            try:
                second_date = (dt.date.fromisoformat(date) + dt.timedelta(days=1)).isoformat()
            except ValueError as exc:
                raise ToolError(f"Date {date!r} is not in the form YYYY-MM-DD.") from exc
        leave_after = arrival.removesuffix("+1")
        for second in _search(db, second_date, first["destination"], destination, leave_after):
            pairs.append([first, second])
    return pairs


@tool
def list_all_airports() -> dict[str, str]:
    """List every airport code with its city."""
    return dict(AIRPORTS)


# --- write tools -------------------------------------------------------------------------------


@tool
def book_reservation(
    user_id: str,
    origin: str,
    destination: str,
    flight_type: Literal["one_way", "round_trip"],
    cabin: Cabin,
    flights: list[dict[str, Any]],
    passengers: list[dict[str, Any]],
    payment_methods: list[dict[str, Any]],
    total_baggages: int,
    nonfree_baggages: int,
    insurance: Literal["yes", "no"],
    context: ToolContext,
) -> dict[str, Any]:
    """Book a new reservation. Needs the user's explicit confirmation first.

    Args:
        user_id: The booking user's id.
        origin: Origin airport code, e.g. 'SFO'.
        destination: Destination airport code, e.g. 'JFK'.
        flight_type: 'one_way' or 'round_trip'.
        cabin: 'basic_economy', 'economy' or 'business'.
        flights: Each leg as {"flight_number": "HAT001", "date": "2024-05-01"}.
        passengers: Each as {"first_name": "John", "last_name": "Doe", "dob": "1990-01-01"}.
        payment_methods: Each as {"payment_id": "gift_card_0000000", "amount": 100}.
        total_baggages: Total checked bags.
        nonfree_baggages: Checked bags that are paid for.
        insurance: 'yes' or 'no'.
    """
    db = db_of(context)
    user = _user(db, user_id)
    people = _check_passengers(passengers)
    if not flights:
        raise ToolError("A reservation needs at least one flight.")
    legs, days, total = [], [], 0.0
    for leg in flights:
        flight, day = _bookable(db, leg, cabin, len(people))
        price = day["prices"][cabin]
        legs.append(
            {
                "origin": flight["origin"],
                "destination": flight["destination"],
                "flight_number": flight["flight_number"],
                "date": str(leg["date"]).strip(),
                "price": price,
            }
        )
        days.append(day)
        total += price * len(people)
    if insurance == "yes":
        total += INSURANCE_PER_PASSENGER * len(people)
    total += BAG_FEE * nonfree_baggages
    payments = []
    for payment in payment_methods:
        if (
            not isinstance(payment, dict)
            or not {"payment_id", "amount"} <= payment.keys()
            or not isinstance(payment["amount"], int | float)
        ):
            raise ToolError("Each payment must look like {'payment_id': '...', 'amount': 100}.")
        method = user["payment_methods"].get(str(payment["payment_id"]))
        if method is None:
            raise ToolError(f"Payment method {payment['payment_id']!r} is not in the profile.")
        prepaid = method["source"] in ("gift_card", "certificate")
        if prepaid and method["amount"] < payment["amount"]:
            raise ToolError(f"Payment method {method['id']} has too little balance.")
        payments.append({"payment_id": method["id"], "amount": payment["amount"]})
    paid = sum(p["amount"] for p in payments)
    if abs(paid - total) > 1e-6:
        raise ToolError(f"The payments add up to {paid}, but the total price is {total}.")
    reservation_id = next((r for r in NEW_RESERVATION_IDS if r not in db["reservations"]), None)
    if reservation_id is None:
        raise ToolError("No more reservations can be booked in this conversation.")
    # Every check passed: only now take the money and the seats.
    for payment in payments:
        method = user["payment_methods"][payment["payment_id"]]
        if method["source"] == "gift_card":
            method["amount"] = round(method["amount"] - payment["amount"], 2)
        elif method["source"] == "certificate":  # a certificate's remainder is not refunded
            del user["payment_methods"][payment["payment_id"]]
    for day in days:
        day["available_seats"][cabin] -= len(people)
    reservation = {
        "reservation_id": reservation_id,
        "user_id": user["user_id"],
        "origin": origin.strip().upper(),
        "destination": destination.strip().upper(),
        "flight_type": flight_type,
        "cabin": cabin,
        "flights": legs,
        "passengers": people,
        "payment_history": payments,
        "created_at": NOW,
        "total_baggages": total_baggages,
        "nonfree_baggages": nonfree_baggages,
        "insurance": insurance,
    }
    db["reservations"][reservation_id] = reservation
    user["reservations"].append(reservation_id)
    return reservation


@tool
def cancel_reservation(reservation_id: str, context: ToolContext) -> dict[str, Any]:
    """Cancel a whole reservation and refund its payments. Check the policy allows it first.

    Args:
        reservation_id: The reservation id, e.g. 'ZFA04Y'.
    """
    reservation = _reservation(db_of(context), reservation_id)
    if reservation.get("status") == "cancelled":
        raise ToolError(f"Reservation {reservation['reservation_id']} is already cancelled.")
    refunds = [
        {"payment_id": p["payment_id"], "amount": -p["amount"]}
        for p in reservation["payment_history"]
    ]
    reservation["payment_history"].extend(refunds)
    reservation["status"] = "cancelled"
    return reservation


@tool
def update_reservation_baggages(
    reservation_id: str,
    total_baggages: int,
    nonfree_baggages: int,
    payment_id: str,
    context: ToolContext,
) -> dict[str, Any]:
    """Set a reservation's checked bags; extra paid bags cost $50 each. Needs confirmation.

    Args:
        reservation_id: The reservation id, e.g. 'ZFA04Y'.
        total_baggages: The new total number of checked bags.
        nonfree_baggages: The new number of paid bags.
        payment_id: Payment method id for the fee, e.g. 'credit_card_0000000'.
    """
    db = db_of(context)
    reservation = _reservation(db, reservation_id)
    user = _user(db, reservation["user_id"])
    fee = BAG_FEE * max(0, nonfree_baggages - reservation["nonfree_baggages"])
    payment = _charge_for_update(user, payment_id, fee)
    if payment is not None:
        reservation["payment_history"].append(payment)
    reservation["total_baggages"] = total_baggages
    reservation["nonfree_baggages"] = nonfree_baggages
    return reservation


@tool
def update_reservation_flights(
    reservation_id: str,
    cabin: Cabin,
    flights: list[dict[str, Any]],
    payment_id: str,
    context: ToolContext,
) -> dict[str, Any]:
    """Replace a reservation's flights and/or cabin, paying or refunding the difference.

    Args:
        reservation_id: The reservation id, e.g. 'ZFA04Y'.
        cabin: 'basic_economy', 'economy' or 'business'.
        flights: ALL legs of the new itinerary, kept ones included, each as
            {"flight_number": "HAT001", "date": "2024-05-01"}.
        payment_id: Gift card or credit card id for the price difference.
    """
    db = db_of(context)
    reservation = _reservation(db, reservation_id)
    user = _user(db, reservation["user_id"])
    seats = len(reservation["passengers"])
    legs, total = [], 0.0
    for leg in flights:
        kept = next(
            (
                old
                for old in reservation["flights"]
                if isinstance(leg, dict)
                and old["flight_number"] == str(leg.get("flight_number", "")).strip().upper()
                and old["date"] == str(leg.get("date", "")).strip()
                and cabin == reservation["cabin"]
            ),
            None,
        )
        if kept is not None:  # an unchanged leg keeps the price it was bought at
            legs.append(kept)
            total += kept["price"] * seats
            continue
        flight, day = _bookable(db, leg, cabin, seats)
        new_leg = {
            "origin": flight["origin"],
            "destination": flight["destination"],
            "flight_number": flight["flight_number"],
            "date": str(leg["date"]).strip(),
            "price": day["prices"][cabin],
        }
        legs.append(new_leg)
        total += new_leg["price"] * seats
    total -= sum(old["price"] for old in reservation["flights"]) * seats
    payment = _charge_for_update(user, payment_id, total)
    if payment is not None:
        reservation["payment_history"].append(payment)
    reservation["flights"] = legs
    reservation["cabin"] = cabin
    return reservation


@tool
def update_reservation_passengers(
    reservation_id: str, passengers: list[dict[str, Any]], context: ToolContext
) -> dict[str, Any]:
    """Replace a reservation's passenger details; the number of passengers cannot change.

    Args:
        reservation_id: The reservation id, e.g. 'ZFA04Y'.
        passengers: Each as {"first_name": "John", "last_name": "Doe", "dob": "1990-01-01"}.
    """
    reservation = _reservation(db_of(context), reservation_id)
    people = _check_passengers(passengers)
    if len(people) != len(reservation["passengers"]):
        raise ToolError("The number of passengers cannot change.")
    reservation["passengers"] = people
    return reservation


@tool
def send_certificate(user_id: str, amount: float, context: ToolContext) -> str:
    """Give a user a travel certificate as compensation (only when the policy allows).

    Args:
        user_id: The user id, e.g. 'sara_doe_496'.
        amount: The certificate value in dollars.
    """
    if amount <= 0:
        raise ToolError("The certificate amount must be positive.")
    user = _user(db_of(context), user_id)
    free = [c for c in NEW_CERTIFICATE_IDS if c not in user["payment_methods"]]
    certificate_id = free[0] if free else None
    if certificate_id is None:
        raise ToolError("No more certificates can be sent in this conversation.")
    value = int(amount) if float(amount).is_integer() else amount
    user["payment_methods"][certificate_id] = {
        "source": "certificate",
        "id": certificate_id,
        "amount": value,
    }
    return f"Certificate {certificate_id} of ${value} added to user {user['user_id']}."


TOOLS: list[Tool] = [
    get_user_details,
    get_reservation_details,
    search_direct_flight,
    search_onestop_flight,
    list_all_airports,
    calculate,
    transfer_to_human_agents,
    book_reservation,
    cancel_reservation,
    update_reservation_baggages,
    update_reservation_flights,
    update_reservation_passengers,
    send_certificate,
]
WRITE_TOOLS = frozenset(
    {
        "book_reservation",
        "cancel_reservation",
        "update_reservation_baggages",
        "update_reservation_flights",
        "update_reservation_passengers",
        "send_certificate",
    }
)
# The policy identifies an airline customer by user id; looking the profile up confirms it.
AUTH_TOOLS = frozenset({"get_user_details"})
