"""The simulated Stripe API: payment intents, charges, customers, and money out (refunds,
transfers, payouts: stripe_moves), kept in memory.

Stripe's test payment methods whose name contains ``chargeDeclined`` (``pm_card_chargeDeclined``,
``tok_chargeDeclined``) are declined with a 402 card_error, as in test mode. The payments
themselves live in stripe_payments, the form syntax and error shapes in stripe_params.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from multidict import CIMultiDict

from outlay.simulator.common import SimContext, SimReply, json_reply
from outlay.simulator.stripe_moves import ROUTES, MoneyOut
from outlay.simulator.stripe_params import (
    StripeError,
    decode_form,
    existing,
    form_text,
    param_int,
    param_metadata,
    param_string,
)
from outlay.simulator.stripe_payments import Payments
from outlay.upstream.base import UpstreamRequest

__all__ = ["StripeSim", "decode_form"]

_PAYMENT_INTENT = re.compile(r"/v1/payment_intents/([^/]+)(?:/([a-z_]+))?")
_CHARGE = re.compile(r"/v1/charges/([^/]+)(?:/([a-z_]+))?")
_CUSTOMER = re.compile(r"/v1/customers/([^/]+)")

Action = Callable[[str, Mapping[str, Any]], dict[str, Any]]


class StripeSim:
    """One simulated Stripe account in test mode."""

    idempotent = True

    def __init__(self, ctx: SimContext) -> None:
        self._ctx = ctx
        self._customers: dict[str, dict[str, Any]] = {}
        self.payments = Payments(ctx, self._customer_ref)
        pay = self.payments
        self.money_out = MoneyOut(ctx, lambda charge_id: existing(
            pay.charges, charge_id, "charge", "charge"), pay.charges.get,
            lambda intent_id: (pay.intents.get(intent_id) or {}).get("latest_charge"))
        # POST /v1/payment_intents/{id}[/{action}] and /v1/charges/{id}[/{action}]
        self._intent_actions: dict[str | None, Action] = {
            None: pay.update_intent, "confirm": pay.confirm_intent,
            "capture": pay.capture_intent, "cancel": pay.cancel_intent,
            "increment_authorization": pay.increment_intent,
        }
        self._charge_actions: dict[str | None, Action] = {
            None: pay.update_charge, "capture": pay.capture_charge,
            # Stripe's older refund routes: a refund object, and the refunded charge
            "refunds": lambda charge_id, params: self.money_out.create(
                "refund", {**params, "charge": charge_id}),
            "refund": self._refund_charge,
        }

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
            params = decode_form(form_text(request.body))
            if path == "/v1/payment_intents":
                return 200, self.payments.create_intent(params)
            if path == "/v1/charges":
                return 200, self.payments.create_charge(params)
            if path == "/v1/customers":
                return 200, self._create_customer(params)
            if path in ROUTES:
                return 200, self.money_out.create(ROUTES[path], params)
            for pattern, actions in ((_PAYMENT_INTENT, self._intent_actions),
                                     (_CHARGE, self._charge_actions)):
                match = pattern.fullmatch(path)
                if match and match.group(2) in actions:
                    return 200, actions[match.group(2)](match.group(1), params)
        elif method == "GET":
            if path == "/v1/customers":
                return 200, self._list_customers(decode_form(request.query))
            match = _PAYMENT_INTENT.fullmatch(path)
            if match and match.group(2) is None:
                return 200, self._intent(match.group(1), decode_form(request.query))
            match = _CHARGE.fullmatch(path)
            if match and match.group(2) is None:
                return 200, self.payments.charge(match.group(1))
            match = _CUSTOMER.fullmatch(path)
            if match:
                return 200, existing(self._customers, match.group(1), "customer", "id", 404)
        raise StripeError(
            404,
            f"Unrecognized request URL ({method}: {request.path}). Please see "
            "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        )

    def _refund_charge(self, charge_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        self.money_out.create("refund", {**params, "charge": charge_id})
        return self.payments.charge(charge_id)

    def _intent(self, intent_id: str, query: Mapping[str, Any]) -> dict[str, Any]:
        """A payment intent, its latest charge expanded when the read asks for it."""
        intent = self.payments.intent(intent_id)
        expand = query.get("expand")
        if isinstance(expand, list) and "latest_charge" in expand and intent["latest_charge"]:
            intent = {**intent,
                      "latest_charge": self.payments.charge(intent["latest_charge"])}
        return intent

    def _create_customer(self, params: Mapping[str, Any]) -> dict[str, Any]:
        email = param_string(params, "email")
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
            "description": param_string(params, "description"),
            "email": email,
            "livemode": False,
            "metadata": param_metadata(params),
            "name": param_string(params, "name"),
            "phone": param_string(params, "phone"),
            "preferred_locales": [],
            "tax_exempt": "none",
        }
        self._customers[customer_id] = customer
        return customer

    def _list_customers(self, params: Mapping[str, Any]) -> dict[str, Any]:
        limit = param_int(params, "limit", default=10)
        if not 1 <= limit <= 100:
            raise StripeError(
                400,
                "This value must be between 1 and 100.",
                param="limit",
                code="parameter_invalid_integer",
            )
        newest_first = list(reversed(self._customers.values()))
        after = param_string(params, "starting_after")
        if after is not None:
            existing(self._customers, after, "customer", "starting_after")
            newest_first = newest_first[[c["id"] for c in newest_first].index(after) + 1 :]
        email = param_string(params, "email")
        if email is not None:
            newest_first = [c for c in newest_first if c["email"] == email]
        return {
            "object": "list",
            "data": newest_first[:limit],
            "has_more": len(newest_first) > limit,
            "url": "/v1/customers",
        }

    def _customer_ref(self, params: Mapping[str, Any]) -> str | None:
        customer = param_string(params, "customer")
        if customer is not None:
            existing(self._customers, customer, "customer", "customer")
        return customer


