"""The simulated Stripe API: payment intents, charges and customers, kept in memory.

Form bodies use Stripe's bracket syntax (``metadata[order]=42``, ``expand[0]=customer``).
Errors have Stripe's shape, ``{"error": {"type", "message", "param", "code"}}``. Stripe's
test payment methods whose name contains ``chargeDeclined`` (``pm_card_chargeDeclined``,
``tok_chargeDeclined``) are declined with a 402 card_error, as in test mode.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from multidict import CIMultiDict

from outlay.simulator.common import SimContext, SimReply, json_reply
from outlay.upstream.base import UpstreamRequest

MAX_AMOUNT = 99_999_999  # Stripe's ceiling in the smallest currency unit
_CAPTURE_METHODS = ("automatic", "automatic_async", "manual")
_PAYMENT_INTENT = re.compile(r"/v1/payment_intents/([^/]+)")
_CHARGE = re.compile(r"/v1/charges/([^/]+)")
_CUSTOMER = re.compile(r"/v1/customers/([^/]+)")
_CURRENCY = re.compile(r"[a-zA-Z]{3}")
_BRACKETS = re.compile(r"\[([^\]]*)\]")
_DECLINED = "chargeDeclined"


class StripeError(Exception):
    """A request Stripe refuses, rendered as its error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str = "invalid_request_error",
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": error_type, "message": message, **extra}
        if param is not None:
            self.body["param"] = param
        if code is not None:
            self.body["code"] = code


class StripeSim:
    """One simulated Stripe account in test mode."""

    idempotent = True

    def __init__(self, ctx: SimContext) -> None:
        self._ctx = ctx
        self._payment_intents: dict[str, dict[str, Any]] = {}
        self._charges: dict[str, dict[str, Any]] = {}
        self._customers: dict[str, dict[str, Any]] = {}

    def handle(self, request: UpstreamRequest) -> SimReply:
        headers = self._headers(request)
        try:
            status, answer = self._route(request)
        except StripeError as exc:
            return json_reply(exc.status, {"error": exc.body}, headers)
        return json_reply(status, answer, headers)

    def error(self, status: int, message: str) -> SimReply:
        kinds = {402: "card_error", 429: "invalid_request_error"}
        kind = kinds.get(status, "api_error" if status >= 500 else "invalid_request_error")
        body = {"type": kind, "message": message}
        return json_reply(status, {"error": body}, {"Request-Id": self._ctx.new_id("req_")})

    def idempotency_conflict(self, key: str) -> SimReply:
        message = (
            "Keys for idempotent requests can only be used with the same parameters they were "
            f"first used with. Try using a key other than '{key}' if you meant to execute a "
            "different request."
        )
        body = {"type": "idempotency_error", "message": message}
        return json_reply(400, {"error": body}, {"Request-Id": self._ctx.new_id("req_")})

    def _headers(self, request: UpstreamRequest) -> dict[str, str]:
        incoming = CIMultiDict(request.headers)
        headers = {"Request-Id": self._ctx.new_id("req_")}
        if "Stripe-Version" in incoming:
            headers["Stripe-Version"] = incoming["Stripe-Version"]
        if "Idempotency-Key" in incoming:
            headers["Idempotency-Key"] = incoming["Idempotency-Key"]
        return headers

    def _route(self, request: UpstreamRequest) -> tuple[int, dict[str, Any]]:
        method, path = request.method.upper(), request.path.rstrip("/")
        if method == "POST":
            params = decode_form(_text(request.body))
            if path == "/v1/payment_intents":
                return 200, self._create_payment_intent(params)
            if path == "/v1/charges":
                return 200, self._create_charge(params)
            if path == "/v1/customers":
                return 200, self._create_customer(params)
        elif method == "GET":
            if path == "/v1/customers":
                return 200, self._list_customers(decode_form(request.query))
            for pattern, store, kind, param in (
                (_PAYMENT_INTENT, self._payment_intents, "payment_intent", "intent"),
                (_CHARGE, self._charges, "charge", "id"),
                (_CUSTOMER, self._customers, "customer", "id"),
            ):
                match = pattern.fullmatch(path)
                if match:
                    return 200, _existing(store, match.group(1), kind, param, 404)
        raise StripeError(
            404,
            f"Unrecognized request URL ({method}: {request.path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )

    def _create_payment_intent(self, params: Mapping[str, Any]) -> dict[str, Any]:
        amount, currency = _amount(params), _currency(params)
        customer = self._customer_ref(params)
        payment_method = _string(params, "payment_method")
        confirm = _bool(params, "confirm")
        capture_method = _string(params, "capture_method") or "automatic_async"
        if capture_method not in _CAPTURE_METHODS:
            raise StripeError(
                400,
                "Invalid capture_method: must be one of automatic, automatic_async, or manual",
                param="capture_method",
            )
        if confirm and not payment_method:
            raise StripeError(
                400,
                "You cannot confirm this PaymentIntent because it's missing a payment method. "
                "You can either update the PaymentIntent with a payment method and then confirm "
                "it again, or confirm it again directly with a payment method.",
                code="payment_intent_unexpected_state",
            )
        intent_id = self._ctx.new_id("pi_")
        intent: dict[str, Any] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": capture_method,
            "client_secret": f"{intent_id}_secret_{self._ctx.new_id('')}",
            "confirmation_method": "automatic",
            "created": self._ctx.now(),
            "currency": currency,
            "customer": customer,
            "description": _string(params, "description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": _metadata(params),
            "next_action": None,
            "payment_method": payment_method,
            "payment_method_types": _string_list(params, "payment_method_types") or ["card"],
            "receipt_email": _string(params, "receipt_email"),
            "status": "requires_confirmation" if payment_method else "requires_payment_method",
        }
        self._payment_intents[intent_id] = intent
        if not confirm:
            return intent
        assert payment_method is not None  # a confirm without one was refused above
        captured = capture_method != "manual"
        charge = self._charge(amount, currency, customer, payment_method, captured, {}, None)
        charge["payment_intent"] = intent_id
        intent["latest_charge"] = charge["id"]
        if charge["status"] == "failed":
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = _decline_details(charge)
            raise _declined(charge["id"], payment_intent=intent)
        intent["status"] = "succeeded" if captured else "requires_capture"
        intent["amount_received" if captured else "amount_capturable"] = amount
        return intent

    def _create_charge(self, params: Mapping[str, Any]) -> dict[str, Any]:
        amount, currency = _amount(params), _currency(params)
        customer = self._customer_ref(params)
        source = _string(params, "source")
        if not source and not customer:
            raise StripeError(400, "Must provide source or customer.", code="missing")
        captured = _bool(params, "capture", default=True)
        charge = self._charge(
            amount,
            currency,
            customer,
            source or "card_default",
            captured,
            _metadata(params),
            _string(params, "description"),
        )
        if charge["status"] == "failed":
            raise _declined(charge["id"])
        return charge

    def _charge(
        self,
        amount: int,
        currency: str,
        customer: str | None,
        payment_method: str,
        captured: bool,
        metadata: dict[str, str],
        description: str | None,
    ) -> dict[str, Any]:
        charge_id = self._ctx.new_id("ch_")
        declined = _DECLINED in payment_method
        charge: dict[str, Any] = {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount if captured and not declined else 0,
            "amount_refunded": 0,
            "balance_transaction": None if declined else self._ctx.new_id("txn_"),
            "captured": captured and not declined,
            "created": self._ctx.now(),
            "currency": currency,
            "customer": customer,
            "description": description,
            "failure_code": "card_declined" if declined else None,
            "failure_message": "Your card was declined." if declined else None,
            "livemode": False,
            "metadata": metadata,
            "paid": not declined,
            "payment_intent": None,
            "payment_method": payment_method,
            "refunded": False,
            "refunds": {
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/charges/{charge_id}/refunds",
            },
            "status": "failed" if declined else "succeeded",
        }
        self._charges[charge_id] = charge
        return charge

    def _create_customer(self, params: Mapping[str, Any]) -> dict[str, Any]:
        email = _string(params, "email")
        if email is not None and "@" not in email:
            raise StripeError(400, f"Invalid email address: {email}", param="email")
        customer_id = self._ctx.new_id("cus_")
        customer: dict[str, Any] = {
            "id": customer_id,
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": self._ctx.now(),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": _string(params, "description"),
            "email": email,
            "livemode": False,
            "metadata": _metadata(params),
            "name": _string(params, "name"),
            "phone": _string(params, "phone"),
            "preferred_locales": [],
            "tax_exempt": "none",
        }
        self._customers[customer_id] = customer
        return customer

    def _list_customers(self, params: Mapping[str, Any]) -> dict[str, Any]:
        limit = _int(params, "limit", default=10)
        if not 1 <= limit <= 100:
            raise StripeError(
                400,
                "This value must be between 1 and 100.",
                param="limit",
                code="parameter_invalid_integer",
            )
        newest_first = list(reversed(self._customers.values()))
        after = _string(params, "starting_after")
        if after is not None:
            _existing(self._customers, after, "customer", "starting_after")
            newest_first = newest_first[[c["id"] for c in newest_first].index(after) + 1 :]
        email = _string(params, "email")
        if email is not None:
            newest_first = [c for c in newest_first if c["email"] == email]
        return {
            "object": "list",
            "data": newest_first[:limit],
            "has_more": len(newest_first) > limit,
            "url": "/v1/customers",
        }

    def _customer_ref(self, params: Mapping[str, Any]) -> str | None:
        customer = _string(params, "customer")
        if customer is not None:
            _existing(self._customers, customer, "customer", "customer")
        return customer


def decode_form(raw: str) -> dict[str, Any]:
    """Stripe's form encoding as nested values: brackets make objects, numbered ones lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        name = key.split("[", 1)[0]
        parts = [name, *_BRACKETS.findall(key[len(name) :])]
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        # "a[]=x" appends, as Stripe reads it.
        node[parts[-1] or str(len(node))] = value
    return {key: _listify(value) for key, value in root.items()}


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    items = {key: _listify(item) for key, item in value.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise StripeError(400, "Invalid request: the body is not UTF-8 form data.") from None


def _existing(
    store: Mapping[str, dict[str, Any]], key: str, kind: str, param: str, status: int = 400
) -> dict[str, Any]:
    """The object named ``key``; Stripe answers 404 for one named in the URL, else 400."""
    found = store.get(key)
    if found is None:
        raise StripeError(status, f"No such {kind}: '{key}'", param=param, code="resource_missing")
    return found


def _string(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise StripeError(400, f"Invalid string: {value!r}", param=name)
    return value


def _string_list(params: Mapping[str, Any], name: str) -> list[str] | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise StripeError(400, f"Invalid array: {name}", param=name)
    return value


def _int(params: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = params.get(name)
    if value is None or value == "":
        if default is not None:
            return default
        raise StripeError(
            400, f"Missing required param: {name}.", param=name, code="parameter_missing"
        )
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise StripeError(
            400, f"Invalid integer: {value}", param=name, code="parameter_invalid_integer"
        )
    return int(value)


def _bool(params: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value not in ("true", "false"):
        raise StripeError(400, f"Invalid boolean: {value}", param=name)
    return bool(value == "true")


def _amount(params: Mapping[str, Any]) -> int:
    amount = _int(params, "amount")
    if amount < 1:
        raise StripeError(
            400,
            "This value must be greater than or equal to 1.",
            param="amount",
            code="parameter_invalid_integer",
        )
    if amount > MAX_AMOUNT:
        raise StripeError(
            400,
            f"Amount must be no more than {MAX_AMOUNT} in the smallest currency unit.",
            param="amount",
            code="amount_too_large",
        )
    return amount


def _currency(params: Mapping[str, Any]) -> str:
    value = params.get("currency")
    if value is None or value == "":
        raise StripeError(
            400, "Missing required param: currency.", param="currency", code="parameter_missing"
        )
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise StripeError(400, f"Invalid currency: {value}.", param="currency")
    return value.lower()


def _metadata(params: Mapping[str, Any]) -> dict[str, str]:
    value = params.get("metadata")
    if value is None or value == "":
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise StripeError(400, "Invalid object", param="metadata")
    if len(value) > 50:
        raise StripeError(400, "Metadata can have at most 50 keys.", param="metadata")
    for key, item in value.items():
        if len(key) > 40 or len(item) > 500:
            raise StripeError(
                400,
                "Metadata keys must be at most 40 characters and values at most 500.",
                param=f"metadata[{key}]",
            )
    # An empty value unsets a key in Stripe, so it never shows in the object.
    return {key: item for key, item in value.items() if item != ""}


def _decline_details(charge: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "generic_decline",
        "message": "Your card was declined.",
        "charge": charge["id"],
    }


def _declined(charge_id: str, **extra: Any) -> StripeError:
    return StripeError(
        402,
        "Your card was declined.",
        code="card_declined",
        error_type="card_error",
        decline_code="generic_decline",
        charge=charge_id,
        **extra,
    )
