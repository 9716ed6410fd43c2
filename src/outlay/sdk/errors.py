"""The refusals an agent can get from the gateway, as typed exceptions, mapped once from SPEC §4's
error table (status and `code`, in either the OpenAI or the Anthropic body shape).

OutlayError                 status, code, message, details, request_id
├── InvalidKey              401 invalid_api_key (and the base of every 401)
│   └── KeyRevoked          401 key_revoked
│       └── KeyExpired      401 key_expired                       expired_at
├── NotAllowed              403 (the base of the allow-lists')    allowed
│   ├── ModelNotAllowed     403 model_not_allowed
│   ├── VendorNotAllowed    403 vendor_not_allowed
│   ├── OperationNotAllowed 403 operation_not_allowed             vendor, method, path
│   ├── AccountNotAllowed   403 account_not_allowed               vendor, account
│   └── DestinationNotAllowed 403 destination_not_allowed         vendor, destination
├── MoneyOutNotCapped       403 money_out_not_capped              vendor
│                           (itself: 403 approval_mismatch)       approval_id, state, differs
├── ApprovalRequired        403 approval_required                 approval_id
├── BudgetExceeded          402 budget_exceeded                   scope, period, spent_usd, cap_usd,
│                                                                 resets_at
├── RateLimited             429 rate_limit_exceeded | hourly_… | daily_… | token_… |
│                               concurrency_limit_exceeded |      retry_after, scope, limit
│                               provider_rate_limited
│                               loop_detected (never retried)     repeats, window_s
│                               too_many_tag_values
├── InvalidRequest          400 invalid_request | price_unknown | missing_tag;
│                           413 request_too_large; 408 request_timeout
└── Unavailable             502 / 503 upstream_unavailable | enforcement_unavailable

An expired key is a KeyRevoked: both mean the key will never work again, so one `except` stops
an agent on either.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from outlay.retry_after import parse_retry_after

REQUEST_ID_HEADER = "X-Outlay-Request-Id"
# Fields of an error object that are its envelope; everything else is the refusal's details.
_ENVELOPE = frozenset({"message", "type", "code", "param"})


class OutlayError(Exception):
    """A call the Outlay gateway refused: its HTTP status, machine `code`, `message`, the
    error body's other fields as `details`, and the `X-Outlay-Request-Id` of the refusal."""

    status: int = 500
    code: str = "outlay_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = type(self).status if status is None else status
        self.code = type(self).code if code is None else code
        self.details: dict[str, Any] = dict(details or {})
        self.request_id = request_id

    @property
    def scope(self) -> str | None:
        """The scope whose policy refused the call (`key:…`, `agent:…`, …), when given."""
        return _text(self.details.get("scope"))


class InvalidKey(OutlayError):
    """401: no key, or one the gateway does not know."""

    status = 401
    code = "invalid_api_key"


class KeyRevoked(InvalidKey):
    """401: the key was revoked; it will never work again."""

    code = "key_revoked"


class KeyExpired(KeyRevoked):
    """401: the key's TTL has run out."""

    code = "key_expired"

    @property
    def expired_at(self) -> datetime | None:
        return _instant(self.details.get("expired_at"))


class NotAllowed(OutlayError):
    """403: the call is outside an allow-list of a policy in force (`allowed`: what it
    allows; empty when no policy lists any). Retrying does not help."""

    status = 403
    code = "not_allowed"

    @property
    def allowed(self) -> list[str]:
        return _names(self.details.get("allowed"))

    @property
    def vendor(self) -> str | None:
        return _text(self.details.get("vendor"))


class ModelNotAllowed(NotAllowed):
    """403: the model is outside the allow-list, or not free under `free_models_only`."""

    code = "model_not_allowed"


class VendorNotAllowed(NotAllowed):
    """403: the vendor is outside the allow-list."""

    code = "vendor_not_allowed"


class OperationNotAllowed(NotAllowed):
    """403: the vendor call (`method`, `path`) is outside the scope's `operations`."""

    code = "operation_not_allowed"

    @property
    def method(self) -> str | None:
        return _text(self.details.get("method"))

    @property
    def path(self) -> str | None:
        return _text(self.details.get("path"))


class AccountNotAllowed(NotAllowed):
    """403: the connected account the call acts on (`Stripe-Account`, `Stripe-Context`) is
    one no policy in force allows."""

    code = "account_not_allowed"

    @property
    def account(self) -> str | None:
        return _text(self.details.get("account"))


class DestinationNotAllowed(NotAllowed):
    """403: the country or recipient the call sends to is outside the scope's
    `destinations`."""

    code = "destination_not_allowed"

    @property
    def destination(self) -> str | None:
        return _text(self.details.get("destination"))


class MoneyOutNotCapped(OutlayError):
    """403: a refund, transfer or payout under a hard spend budget, with no money-out budget
    on any scope of the call: Outlay moves no money out uncapped. Retrying does not help."""

    status = 403
    code = "money_out_not_capped"

    @property
    def vendor(self) -> str | None:
        return _text(self.details.get("vendor"))


class ApprovalRequired(OutlayError):
    """403: a human must approve the call; retry with `X-Outlay-Approval: <approval_id>` once
    approved."""

    status = 403
    code = "approval_required"

    @property
    def approval_id(self) -> str | None:
        return _text(self.details.get("approval_id"))


class BudgetExceeded(OutlayError):
    """402: a hard budget has no room for the call. Retrying does not help before `resets_at`."""

    status = 402
    code = "budget_exceeded"

    @property
    def period(self) -> str | None:
        return _text(self.details.get("period"))

    @property
    def spent_usd(self) -> Decimal | None:
        return _money(self.details.get("spent_usd"))

    @property
    def cap_usd(self) -> Decimal | None:
        return _money(self.details.get("cap_usd"))

    @property
    def resets_at(self) -> datetime | None:
        return _instant(self.details.get("resets_at"))


class RateLimited(OutlayError):
    """429: a rate, token or concurrency limit is full for now."""

    status = 429
    code = "rate_limit_exceeded"

    @property
    def retry_after(self) -> float | None:
        """Seconds until a retry can pass: the `Retry-After` header, else the body's."""
        value = self.details.get("retry_after")
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return None
        try:
            seconds = float(value)
        except ValueError:
            return None
        return seconds if seconds >= 0 else None

    @property
    def limit(self) -> int | None:
        value = self.details.get("limit")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class InvalidRequest(OutlayError):
    """400, 408 or 413: the request itself was refused (malformed, too large, too slow to
    arrive, without a tag a policy requires: code `missing_tag`, or an unpriced model under
    a hard budget: code `price_unknown`)."""

    status = 400
    code = "invalid_request"


class Unavailable(OutlayError):
    """502 or 503: no upstream answered, or the gateway cannot reach its state store."""

    status = 503
    code = "upstream_unavailable"


_BY_CODE: dict[str, type[OutlayError]] = {
    "invalid_api_key": InvalidKey,
    "key_revoked": KeyRevoked,
    "key_expired": KeyExpired,
    "model_not_allowed": ModelNotAllowed,
    "vendor_not_allowed": VendorNotAllowed,
    "operation_not_allowed": OperationNotAllowed,
    "account_not_allowed": AccountNotAllowed,
    "destination_not_allowed": DestinationNotAllowed,
    "money_out_not_capped": MoneyOutNotCapped,
    "approval_required": ApprovalRequired,
    "approval_mismatch": OutlayError,  # the approval presented is not for this call
    "budget_exceeded": BudgetExceeded,
    "rate_limit_exceeded": RateLimited,
    "hourly_rate_limit_exceeded": RateLimited,
    "daily_rate_limit_exceeded": RateLimited,
    "token_rate_limit_exceeded": RateLimited,
    "concurrency_limit_exceeded": RateLimited,
    "loop_detected": RateLimited,  # the same request made over and over (loop_guard)
    "provider_rate_limited": RateLimited,
    "too_many_tag_values": RateLimited,  # a new value of a tag past its `*` policy's max_values
    "invalid_request": InvalidRequest,
    "price_unknown": InvalidRequest,
    "missing_tag": InvalidRequest,  # a tag a policy's required_tags names
    "request_too_large": InvalidRequest,
    "request_timeout": InvalidRequest,  # the body did not arrive in time
    "upstream_unavailable": Unavailable,
    "enforcement_unavailable": Unavailable,
}
# SPEC §4 gives these statuses one meaning each, so they are typed when the answer names no code
# at all (a vendor SDK that keeps only the status, a proxy's error page).
_BY_STATUS: dict[int, type[OutlayError]] = {402: BudgetExceeded, 429: RateLimited}


def is_refusal_code(code: object) -> bool:
    """Whether `code` is one of the gateway's refusal codes (SPEC §4's table)."""
    return isinstance(code, str) and code in _BY_CODE


def error_from_answer(
    status: int, headers: Mapping[str, str] | None, body: object
) -> OutlayError | None:
    """The typed error for an HTTP answer, or None when it is not one of SPEC §4's refusals.

    `body` is the parsed JSON (the whole body, or only its `error` object as the openai SDK
    keeps it), or its text or bytes.
    """
    if status < 400:
        return None
    error = _error_object(body)
    raw_code = error.get("code")
    if raw_code is None:
        cls = _BY_STATUS.get(status)
        code = cls.code if cls else None
    else:
        # a code Outlay does not give is someone else's: Stripe's 402 card_declined is not a
        # budget
        code = _text(raw_code)
        cls = _BY_CODE.get(code) if code else None
    if cls is None:
        return None
    details = {k: v for k, v in error.items() if k not in _ENVELOPE}
    retry_after = parse_retry_after(_header(headers, "Retry-After"), time.time())
    if retry_after is not None:
        details["retry_after"] = retry_after
    message = _text(error.get("message")) or f"The Outlay gateway refused the call ({status})."
    return cls(message, status=status, code=code, details=details,
               request_id=_header(headers, REQUEST_ID_HEADER))


def _error_object(body: object) -> dict[str, Any]:
    """The error object of either body shape, or of the openai SDK's unwrapped `body`."""
    if isinstance(body, bytes | bytearray | str):
        try:
            body = json.loads(body)
        except ValueError:
            return {}
    if not isinstance(body, dict):
        return {}
    inner = body.get("error")
    if isinstance(inner, dict):
        return inner
    return body if "code" in body or "message" in body else {}


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name)
    if value is None:  # a plain dict (stripe, resend) is case-sensitive
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value if isinstance(value, str) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _names(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _money(value: object) -> Decimal | None:
    """USD amounts are decimal strings (or numbers) in the body; never a float here."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
