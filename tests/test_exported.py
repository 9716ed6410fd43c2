"""The public surface of `outlay` is what `__all__` says, and nothing slips in or out by
accident: changing it means changing this list on purpose."""

from __future__ import annotations

from importlib.metadata import version

import outlay

EXPORTED = [
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


def test_all_is_pinned() -> None:
    assert sorted(outlay.__all__) == sorted(EXPORTED)
    assert len(set(outlay.__all__)) == len(outlay.__all__)


def test_every_exported_name_exists() -> None:
    for name in outlay.__all__:
        assert hasattr(outlay, name), name


def test_star_import_gives_exactly_the_exports() -> None:
    namespace: dict[str, object] = {}
    exec("from outlay import *", namespace)  # noqa: S102 (a fixed statement, to test `import *`)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(EXPORTED)


def test_version_is_the_installed_distribution_version() -> None:
    assert outlay.__version__ == version("outlay")
