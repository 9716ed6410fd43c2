"""The simulated Stripe's payments: payment intents and charges through their whole life.

A payment intent is created, updated while nothing is authorized, confirmed (a charge is made:
captured at once, or only authorized under `capture_method=manual`), its authorization
raised (`increment_authorization`), captured in full or in part, or canceled; a charge is
created captured or not, updated and captured. Each state change follows Stripe's rules and
fields (`amount`, `amount_capturable`, `amount_received`, `status`; `captured`,
`amount_captured`, `amount_refunded`), refusing what Stripe refuses with its error codes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from outlay.simulator.common import SimContext
from outlay.simulator.stripe_params import (
    StripeError,
    decline_details,
    declined,
    existing,
    param_amount,
    param_bool,
    param_currency,
    param_metadata,
    param_string,
    param_strings,
)

CAPTURE_METHODS = ("automatic", "automatic_async", "manual")
_UPDATABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
_CONFIRMABLE = ("requires_payment_method", "requires_confirmation")
_CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation",
               "requires_action", "processing")
_CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")
_DECLINED = "chargeDeclined"

CustomerRef = Callable[[Mapping[str, Any]], "str | None"]


def _unexpected(message: str) -> StripeError:
    return StripeError(400, message, code="payment_intent_unexpected_state")


class Payments:
    """The payment intents and charges of one simulated account."""

    def __init__(self, ctx: SimContext, customer_ref: CustomerRef) -> None:
        self._ctx = ctx
        self._customer_ref = customer_ref
        self.intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}

    # -- payment intents ------------------------------------------------------------------
    def create_intent(self, params: Mapping[str, Any]) -> dict[str, Any]:
        amount, currency = param_amount(params), param_currency(params)
        customer = self._customer_ref(params)
        payment_method = param_string(params, "payment_method")
        capture_method = self._capture_method(params, "automatic_async")
        confirm = param_bool(params, "confirm")
        if confirm and not payment_method:
            raise _unexpected(
                "You cannot confirm this PaymentIntent because it's missing a payment method. "
                "You can either update the PaymentIntent with a payment method and then confirm "
                "it again, or confirm it again directly with a payment method.")
        intent_id = self._ctx.new_id("pi_")
        intent: dict[str, Any] = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": capture_method,
            "client_secret": f"{intent_id}_secret_{self._ctx.new_id('')}",
            "confirmation_method": "automatic",
            "created": self._ctx.now(),
            "currency": currency,
            "customer": customer,
            "description": param_string(params, "description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": param_metadata(params),
            "next_action": None,
            "payment_method": payment_method,
            "payment_method_types": param_strings(params, "payment_method_types") or ["card"],
            "receipt_email": param_string(params, "receipt_email"),
            "status": "requires_confirmation" if payment_method else "requires_payment_method",
        }
        self.intents[intent_id] = intent
        if confirm:
            self._pay(intent)
        return intent

    def intent(self, intent_id: str) -> dict[str, Any]:
        return existing(self.intents, intent_id, "payment_intent", "intent", 404)

    def update_intent(self, intent_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        intent = self.intent(intent_id)
        changes_money = any(params.get(name) not in (None, "") for name in ("amount", "currency"))
        if intent["status"] not in _UPDATABLE:
            what = "amount" if changes_money else "details"
            raise _unexpected(
                f"This PaymentIntent's {what} could not be updated because it has a status of "
                f"{intent['status']}. You may only update the {what} of a PaymentIntent with "
                f"one of the following statuses: {', '.join(_UPDATABLE)}.")
        if params.get("amount") not in (None, ""):
            intent["amount"] = param_amount(params)
        if params.get("currency") not in (None, ""):
            intent["currency"] = param_currency(params)
        self._set_details(intent, params)
        payment_method = param_string(params, "payment_method")
        if payment_method is not None:
            intent["payment_method"] = payment_method
            if intent["status"] == "requires_payment_method":
                intent["status"] = "requires_confirmation"
        if params.get("capture_method") not in (None, ""):
            intent["capture_method"] = self._capture_method(params, intent["capture_method"])
        return intent

    def confirm_intent(self, intent_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        intent = self.intent(intent_id)
        if intent["status"] not in _CONFIRMABLE:
            raise _unexpected(
                f"You cannot confirm this PaymentIntent because it has a status of "
                f"{intent['status']}.")
        payment_method = param_string(params, "payment_method") or intent["payment_method"]
        if not payment_method:
            raise _unexpected(
                "You cannot confirm this PaymentIntent because it's missing a payment method.")
        intent["payment_method"] = payment_method
        if params.get("capture_method") not in (None, ""):
            intent["capture_method"] = self._capture_method(params, intent["capture_method"])
        self._pay(intent)
        return intent

    def increment_intent(self, intent_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        intent = self.intent(intent_id)
        if intent["status"] != "requires_capture":
            raise _unexpected(
                f"This PaymentIntent's authorization could not be incremented because it has a "
                f"status of {intent['status']}. Only a PaymentIntent with a status of "
                "requires_capture may be incremented.")
        amount = param_amount(params)
        if amount < intent["amount"]:
            raise StripeError(
                400, f"The amount must be greater than or equal to the current amount "
                f"({intent['amount']}).", param="amount", code="parameter_invalid_integer")
        intent["amount"] = intent["amount_capturable"] = amount
        charge = self.charges[intent["latest_charge"]]
        charge["amount"] = amount
        return intent

    def capture_intent(self, intent_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        intent = self.intent(intent_id)
        if intent["status"] != "requires_capture":
            raise _unexpected(
                f"This PaymentIntent could not be captured because it has a status of "
                f"{intent['status']}. Only a PaymentIntent with one of the following statuses "
                "may be captured: requires_capture.")
        capturable = intent["amount_capturable"]
        amount = param_amount(params, "amount_to_capture", capturable)
        if amount > capturable:
            raise StripeError(
                400, f"The amount to capture ({amount}) must be less than or equal to the "
                f"PaymentIntent's amount_capturable ({capturable}).",
                param="amount_to_capture", code="amount_too_large")
        self._capture(self.charges[intent["latest_charge"]], amount)
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return intent

    def cancel_intent(self, intent_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        intent = self.intent(intent_id)
        if intent["status"] not in _CANCELABLE:
            raise _unexpected(
                f"You cannot cancel this PaymentIntent because it has a status of "
                f"{intent['status']}. Only a PaymentIntent with one of the following statuses "
                f"may be canceled: {', '.join(_CANCELABLE)}.")
        reason = param_string(params, "cancellation_reason")
        if reason is not None and reason not in _CANCELLATION_REASONS:
            raise StripeError(400, f"Invalid cancellation_reason: must be one of "
                              f"{', '.join(_CANCELLATION_REASONS)}", param="cancellation_reason")
        if intent["status"] == "requires_capture":  # the authorization is released
            charge = self.charges[intent["latest_charge"]]
            charge.update(refunded=True, amount_refunded=charge["amount"])
        intent.update(status="canceled", amount_capturable=0, canceled_at=self._ctx.now(),
                      cancellation_reason=reason)
        return intent

    def _pay(self, intent: dict[str, Any]) -> None:
        """Confirm: charge the payment method, captured now or only authorized."""
        captured = intent["capture_method"] != "manual"
        charge = self._charge(intent["amount"], intent["currency"], intent["customer"],
                              intent["payment_method"], captured, {}, None)
        charge["payment_intent"] = intent["id"]
        intent["latest_charge"] = charge["id"]
        if charge["status"] == "failed":
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = decline_details(charge)
            raise declined(charge["id"], payment_intent=intent)
        intent["status"] = "succeeded" if captured else "requires_capture"
        intent["amount_received" if captured else "amount_capturable"] = intent["amount"]

    def _capture_method(self, params: Mapping[str, Any], default: str) -> str:
        method = param_string(params, "capture_method") or default
        if method not in CAPTURE_METHODS:
            raise StripeError(
                400,
                "Invalid capture_method: must be one of automatic, automatic_async, or manual",
                param="capture_method",
            )
        return method

    # -- charges ----------------------------------------------------------------------------
    def create_charge(self, params: Mapping[str, Any]) -> dict[str, Any]:
        amount, currency = param_amount(params), param_currency(params)
        customer = self._customer_ref(params)
        source = param_string(params, "source")
        if not source and not customer:
            raise StripeError(400, "Must provide source or customer.", code="missing")
        charge = self._charge(amount, currency, customer, source or "card_default",
                              param_bool(params, "capture", default=True),
                              param_metadata(params), param_string(params, "description"))
        if charge["status"] == "failed":
            raise declined(charge["id"])
        return charge

    def charge(self, charge_id: str) -> dict[str, Any]:
        return existing(self.charges, charge_id, "charge", "id", 404)

    def update_charge(self, charge_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        charge = self.charge(charge_id)
        for name in ("amount", "currency", "capture"):
            if params.get(name) not in (None, ""):
                raise StripeError(400, f"Received unknown parameter: {name}", param=name)
        self._set_details(charge, params)
        return charge

    def capture_charge(self, charge_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        charge = self.charge(charge_id)
        if charge["captured"] or charge["refunded"] or charge["status"] == "failed":
            raise StripeError(400, f"Charge {charge_id} has already been captured."
                              if charge["captured"] else f"Charge {charge_id} cannot be "
                              "captured.", code="charge_already_captured"
                              if charge["captured"] else "charge_not_capturable")
        amount = param_amount(params, "amount", charge["amount"])
        if amount > charge["amount"]:
            raise StripeError(400, f"The amount to capture ({amount}) must be less than or "
                              f"equal to the charge's amount ({charge['amount']}).",
                              param="amount", code="amount_too_large")
        self._capture(charge, amount)
        return charge

    def _capture(self, charge: dict[str, Any], amount: int) -> None:
        """Capture `amount` of an authorized charge; the rest of the hold is released."""
        charge.update(captured=True, amount_captured=amount,
                      amount_refunded=charge["amount"] - amount)

    def _set_details(self, obj: dict[str, Any], params: Mapping[str, Any]) -> None:
        for name in ("description", "receipt_email"):
            if name in params and name in obj:
                obj[name] = param_string(params, name)
        if params.get("metadata") not in (None, ""):
            obj["metadata"] = {**obj["metadata"], **param_metadata(params)}
            obj["metadata"] = {k: v for k, v in obj["metadata"].items() if v != ""}
        if params.get("customer") not in (None, ""):
            obj["customer"] = self._customer_ref(params)

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
        declined_card = _DECLINED in payment_method
        charge: dict[str, Any] = {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount if captured and not declined_card else 0,
            "amount_refunded": 0,
            "balance_transaction": None if declined_card else self._ctx.new_id("txn_"),
            "captured": captured and not declined_card,
            "created": self._ctx.now(),
            "currency": currency,
            "customer": customer,
            "description": description,
            "failure_code": "card_declined" if declined_card else None,
            "failure_message": "Your card was declined." if declined_card else None,
            "livemode": False,
            "metadata": metadata,
            "paid": not declined_card,
            "payment_intent": None,
            "payment_method": payment_method,
            "refunded": False,
            "refunds": {
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/charges/{charge_id}/refunds",
            },
            "status": "failed" if declined_card else "succeeded",
        }
        self.charges[charge_id] = charge
        return charge
