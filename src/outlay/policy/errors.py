"""Every refusal Outlay gives, drawn once, and mapped to SPEC §4's status codes.

OutlayError
├── AuthError            401  invalid_api_key | key_revoked | key_expired
├── NotAllowed           403  model_not_allowed | vendor_not_allowed | operation_not_allowed |
│   │                         account_not_allowed | destination_not_allowed |
│   │                         money_out_not_capped
│   ├── ApprovalRequired 403  approval_required
│   └── ApprovalMismatch 403  approval_mismatch
├── RateLimited          429  rate_limit_exceeded | hourly_… | daily_… | token_… | concurrency_… |
│   │                         provider_rate_limited
│   └── RateHeld         (429) not yet: on_rate_limit: queue (the gateway queues the call)
├── BudgetExceeded       402  budget_exceeded
│   └── BudgetHeld       (402) not yet: calls in flight may free room (the gateway waits)
├── BadRequest           400  invalid_request | price_unknown; 413 request_too_large;
│   │                    408  request_timeout
│   └── NotFound         404  not_found (a background response of another key, or none)
└── Unavailable          502/503  upstream_unavailable | enforcement_unavailable
"""

from __future__ import annotations

from typing import Any


class OutlayError(Exception):
    """A refusal with an HTTP status, a machine code and details for the error body."""

    status = 500
    error_type = "api_error"

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def headers(self) -> dict[str, str]:
        return {}


class AuthError(OutlayError):
    status = 401
    error_type = "authentication_error"


class NotAllowed(OutlayError):
    status = 403
    error_type = "permission_error"


class ApprovalRequired(NotAllowed):
    """403 approval_required: a human must approve; the gateway may hold the call `wait_s`."""

    def __init__(self, message: str, wait_s: float, **details: Any) -> None:
        super().__init__("approval_required", message, **details)
        self.wait_s = wait_s


class ApprovalMismatch(NotAllowed):
    """403 approval_mismatch: the approval a call presents is not for this call (another key,
    another request, a dearer call, a breach it does not cover) or can no longer be used
    (denied, used, expired); `differs` names what."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__("approval_mismatch", message, **details)


class RateLimited(OutlayError):
    status = 429
    error_type = "rate_limit_error"

    queued_ms = 0  # how long the call waited in the gateway's queue before this refusal

    @property
    def headers(self) -> dict[str, str]:
        """Retry-After, and the refusing window's limit as the rate-limit headers say it."""
        retry = self.details.get("retry_after")
        out = {"Retry-After": str(retry)} if retry is not None else {}
        if self.queued_ms:
            out["X-Outlay-Queued-Ms"] = str(self.queued_ms)
        window, limit = self.details.get("window"), self.details.get("limit")
        if retry is None or window is None or limit is None:
            return out
        kind = "tokens" if window == "tpm" else "requests"
        out[f"x-ratelimit-limit-{kind}"] = str(limit)
        out[f"x-ratelimit-remaining-{kind}"] = "0"
        out[f"x-ratelimit-reset-{kind}"] = f"{retry}s"
        if kind == "requests":
            out["X-RateLimit-Reset"] = str(self.details.get("reset_unix"))
            out["RateLimit-Policy"] = f'"{window}";q={limit};w={self.details.get("window_s")}'
            out["RateLimit"] = f'"{window}";r=0;t={retry}'
        return out


class RateHeld(RateLimited):
    """Not an answer yet: the call breaches a rate window (or its provider's endpoints are
    full) and its policies say `on_rate_limit: queue`; nothing was recorded. The gateway
    queues it up to `wait_s` seconds and asks again. Should it reach an agent, it is the
    429 of its base."""

    def __init__(self, refusal: OutlayError, wait_s: float, scope: str | None = None,
                 agent: str = "") -> None:
        super().__init__(refusal.code, refusal.message, **refusal.details)
        self.wait_s, self.scope, self.agent = wait_s, scope, agent


class BudgetExceeded(OutlayError):
    status = 402
    error_type = "budget_exceeded"

    @property
    def headers(self) -> dict[str, str]:
        return {"x-should-retry": "false"}


class BudgetHeld(BudgetExceeded):
    """Not an answer yet: the call fits a hard budget's settled spend, but not beside other
    calls' reservations. The gateway waits up to `wait_ms` for them to settle and asks
    again; nothing was recorded. Should it reach an agent, it is a 402 like its base."""

    def __init__(self, refusal: BudgetExceeded, wait_ms: int) -> None:
        super().__init__(refusal.code, refusal.message, **refusal.details)
        self.wait_ms = wait_ms


class DowngradeAsked(BudgetExceeded):
    """Not an answer: the budget that refuses the call would send it to a cheaper model
    (`on_exceeded.downgrade_to`); nothing was recorded. The gateway prices `models` for
    this call and asks again with them. Should it reach an agent, it is a 402."""

    def __init__(self, refusal: OutlayError, models: tuple[str, ...]) -> None:
        super().__init__(refusal.code, refusal.message, **refusal.details)
        self.models = models


class BadRequest(OutlayError):
    status = 400
    error_type = "invalid_request_error"


class TooLarge(BadRequest):
    status = 413


class TooSlow(BadRequest):
    """408: the body did not arrive within `server.body_timeout_s` of its head."""

    status = 408


class NotFound(BadRequest):
    status = 404


class Unavailable(OutlayError):
    status = 503
    error_type = "api_error"

    def __init__(self, code: str, message: str, status: int = 503, **details: Any) -> None:
        super().__init__(code, message, **details)
        self.status = status


def invalid_request(message: str, param: str | None = None) -> BadRequest:
    return BadRequest("invalid_request", message, param=param)
