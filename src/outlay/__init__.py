"""Outlay: a gateway that enforces rate limits and USD budgets before AI agents call paid APIs.

The names below come from `outlay.sdk` on first use, so `import outlay` stays cheap for
agents and for the gateway alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from outlay.sdk import (
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
        aretry,
        budget_of,
        error_from,
        intercept_all,
        restore,
        retry,
    )

__version__ = "0.1.0"

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
    "__version__",
    "aretry",
    "budget_of",
    "error_from",
    "intercept_all",
    "restore",
    "retry",
]

_FROM_SDK = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _FROM_SDK:
        from outlay import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
