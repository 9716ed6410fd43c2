"""The Python SDK (SPEC §6): route the official clients through the gateway, typed errors for
its refusals, and a retry helper that honours Retry-After."""

from outlay.sdk.answers import budget_of, error_from
from outlay.sdk.errors import (
    AccountNotAllowed,
    ApprovalRequired,
    BudgetExceeded,
    DestinationNotAllowed,
    InvalidKey,
    InvalidRequest,
    KeyExpired,
    KeyRevoked,
    ModelNotAllowed,
    MoneyOutNotCapped,
    NotAllowed,
    OperationNotAllowed,
    OutlayError,
    RateLimited,
    Unavailable,
    VendorNotAllowed,
)
from outlay.sdk.intercept import intercept_all, restore
from outlay.sdk.retry import aretry, retry

__all__ = [
    "AccountNotAllowed",
    "ApprovalRequired",
    "BudgetExceeded",
    "DestinationNotAllowed",
    "InvalidKey",
    "InvalidRequest",
    "KeyExpired",
    "KeyRevoked",
    "ModelNotAllowed",
    "MoneyOutNotCapped",
    "NotAllowed",
    "OperationNotAllowed",
    "OutlayError",
    "RateLimited",
    "Unavailable",
    "VendorNotAllowed",
    "aretry",
    "budget_of",
    "error_from",
    "intercept_all",
    "restore",
    "retry",
]
