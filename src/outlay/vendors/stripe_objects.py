"""Stripe's payment intents and charges as objects counted by exposure (see vendors.objects).

A payment intent's exposure is its `amount_received` plus, while it is neither `succeeded`
nor `canceled`, its `amount`. A charge's is its `amount_captured` once captured, or its
`amount` while it is an authorization that has neither failed nor been released. Every
`POST` that creates or acts on one is an object call; only an update (or a confirm naming
an amount) and `increment_authorization` can raise what it holds. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

from outlay.policy.errors import invalid_request
from outlay.vendors.base import VendorCall, printable, route_path
from outlay.vendors.bodies import Fields
from outlay.vendors.objects import ObjectCall, ObjectSeen

# Stripe's object ids: a prefix, an underscore, letters and digits.
_ID = re.compile(r"[A-Za-z0-9_]{1,255}")
_ACCOUNT = re.compile(r"acct_[A-Za-z0-9]{1,255}")
_CURRENCY = re.compile(r"[a-z]{3}")
_INTEGER = re.compile(r"-?[0-9]+")
# Stripe's largest amounts have 12 digits; more than this is not a payment but a typo or a probe.
_MAX_AMOUNT_DIGITS = 15
_IDEMPOTENCY_KEY_LIMIT = 255
_KINDS = {"payment_intents": "payment_intent", "charges": "charge"}
_PLURAL = {kind: plural for plural, kind in _KINDS.items()}
_FINISHED = ("succeeded", "canceled")
# the field that carries an amount to check, by (kind, action): read, but never raising
_CHECKED = {("payment_intent", "capture"): "amount_to_capture",
            ("charge", "capture"): "amount", ("charge", "refund"): "amount"}
# actions that set the amount the object holds
_SETS_AMOUNT = {("payment_intent", "update"), ("payment_intent", "confirm"),
                ("payment_intent", "increment_authorization")}

Usd = Callable[[int, str | None], int]  # micro-USD of an amount in a currency (None: unknown)


@dataclass(frozen=True)
class StripeObject:
    """What counting needs of a payment intent or a charge."""

    kind: str
    currency: str
    amount: int
    moved: int  # amount_received, or amount_captured
    open: bool  # whether `amount` can still move

    def to_json(self) -> str:
        return json.dumps({"k": self.kind, "c": self.currency, "a": self.amount,
                           "m": self.moved, "o": self.open}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> StripeObject:
        data = json.loads(text)
        return cls(data["k"], data["c"], data["a"], data["m"], data["o"])

    def exposure(self, usd: Usd) -> int:
        return usd(self.moved, self.currency) + (usd(self.amount, self.currency)
                                                 if self.open else 0)


def object_call(call: VendorCall) -> ObjectCall | None:
    """The object call a Stripe request is: any POST to /v1/payment_intents or /v1/charges,
    or to one of them (`/{id}`, `/{id}/{action}`); None for everything else."""
    if call.method.upper() != "POST":
        return None
    parts = printable(route_path(call.path)).split("/")[1:]
    if len(parts) < 2 or len(parts) > 4 or parts[0].lower() != "v1":
        return None
    kind = _KINDS.get(parts[1].lower())
    if kind is None:
        return None
    object_id = parts[2] if len(parts) > 2 else None
    action = "create" if object_id is None else parts[3].lower() if len(parts) > 3 else "update"
    if object_id is not None:
        _plain_path(call, parts)
        if not _ID.fullmatch(object_id):
            raise invalid_request(
                f"{object_id!r} is not a Stripe object id (letters, digits and underscores).",
                "id")
    account = _account(call)
    fields = Fields.of(call, "form")
    amount: int | None = None
    currency: str | None = None
    if action == "create" or (kind, action) in _SETS_AMOUNT:
        amount = amount_field(fields.get("amount"), "amount")
        currency = _currency_field(fields.get("currency"))
        if action == "create" and amount is None:
            raise invalid_request(
                f"`amount` is required to create a {kind} (an integer in the currency's "
                "smallest unit).", "amount")
        if action == "increment_authorization" and amount is None:
            raise invalid_request("`amount` is required: the new total to authorize.", "amount")
    checked = _CHECKED.get((kind, action))
    if checked is not None:
        amount_field(fields.get(checked), checked)  # a bad one is refused, not forwarded
    name = None if object_id is None else f"{account}/{object_id}" if account else object_id
    read = None if object_id is None else f"/v1/{_PLURAL[kind]}/{object_id}"
    headers = (("Stripe-Account", account),) if account else ()
    describe = f"{kind} {action}" + (f" {object_id}" if object_id else "")
    if amount is not None:
        describe += f" {amount} {currency or ''}".rstrip()
    return ObjectCall(kind, action, name, read, headers, amount, currency,
                      _idempotency_key(call), describe)


def seen(call: ObjectCall, answer: bytes, usd: Usd) -> ObjectSeen | None:
    """The payment intent or charge in an answer, None when the answer is not one."""
    try:
        data = json.loads(answer)
    except ValueError:
        return None
    found = parse_object(data)
    if found is None or found.kind != call.kind:
        return None
    object_id = data.get("id")
    if not isinstance(object_id, str) or not _ID.fullmatch(object_id):
        name = None
    elif call.object_id is not None:
        name = call.object_id  # the name the call was counted under, account included
    else:
        account = dict(call.read_headers).get("Stripe-Account")
        name = f"{account}/{object_id}" if account else object_id
    return ObjectSeen(name, found.to_json(), found.exposure(usd))


def target(call: ObjectCall, state: str | None, usd: Usd) -> int:
    """The most the object can hold once `call` is done (see vendors.objects)."""
    current = None if state is None else StripeObject.from_json(state)
    if call.object_id is None or current is None:
        # a create; or an object the vendor does not know, whose call will fail
        return 0 if call.amount is None else usd(call.amount, call.currency)
    if call.amount is None and call.currency is None:
        return current.exposure(usd)
    if not current.open:  # a finished payment's amount cannot change any more
        return current.exposure(usd)
    currency = call.currency or current.currency
    amount = current.amount if call.amount is None else call.amount
    return usd(current.moved, current.currency) + usd(amount, currency)


def parse_object(data: Any) -> StripeObject | None:
    """A payment intent or a charge from Stripe's JSON; None for anything else."""
    if not isinstance(data, dict):
        return None
    kind, currency, amount = data.get("object"), data.get("currency"), data.get("amount")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency.lower()):
        return None
    if kind == "payment_intent":
        moved, status = data.get("amount_received"), data.get("status")
        if not _count(amount) or not _count(moved) or not isinstance(status, str):
            return None
        return StripeObject(kind, currency.lower(), amount, moved, status not in _FINISHED)
    if kind == "charge":
        captured, moved = data.get("captured"), data.get("amount_captured")
        if not _count(amount) or not isinstance(captured, bool):
            return None
        if not captured:
            moved = 0
        elif not _count(moved):
            return None
        released = data.get("refunded") is True or data.get("status") == "failed"
        return StripeObject(kind, currency.lower(), amount, moved, not captured and not released)
    return None


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _plain_path(call: VendorCall, parts: list[str]) -> None:
    """An object's path as sent must be the path acted on: no escapes, no dot segments, so
    the object counted is the object the vendor acts on."""
    raw = [part for part in call.path.split("?", 1)[0].split("#", 1)[0].split("/") if part]
    if raw != parts:
        raise invalid_request(
            "A Stripe object's path must name it plainly: no %-escapes and no `.` or `..` "
            "segments.", "id")


def _account(call: VendorCall) -> str | None:
    """The connected account of a Stripe Connect call, which names its objects."""
    account = call.headers.get("stripe-account")
    if account is None:
        return None
    account = account.strip()
    if not _ACCOUNT.fullmatch(account):
        raise invalid_request(f"`Stripe-Account` must be an account id such as acct_123, got "
                              f"{account!r}.", "Stripe-Account")
    return account


def amount_field(value: object, name: str) -> int | None:
    """An amount in the smallest currency unit: a non-negative integer, or None when absent."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value):
        if len(value.lstrip("-")) > _MAX_AMOUNT_DIGITS:
            raise invalid_request(f"`{name}` is too large: {value}.", name)
        number = int(value)
    else:
        raise invalid_request(
            f"`{name}` must be an integer in the currency's smallest unit "
            f"(e.g. 2000 for 20.00 USD), got {value!r}.",
            name,
        )
    if number < 0:
        raise invalid_request(f"`{name}` must not be negative, got {number}.", name)
    if number >= 10**_MAX_AMOUNT_DIGITS:
        raise invalid_request(f"`{name}` is too large: {number}.", name)
    return number


def _currency_field(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value.lower()):
        raise invalid_request(
            f"`currency` must be a three-letter ISO code such as usd, got {value!r}.",
            "currency")
    return value.lower()


def _idempotency_key(call: VendorCall) -> str | None:
    key = call.headers.get("idempotency-key", "").strip()
    if not key:
        return None
    if len(key) > _IDEMPOTENCY_KEY_LIMIT:
        raise invalid_request(
            f"`Idempotency-Key` must be at most {_IDEMPOTENCY_KEY_LIMIT} characters, got "
            f"{len(key)}.", "Idempotency-Key")
    return key
