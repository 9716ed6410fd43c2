"""The `policies:` and `default_policy:` sections of a config file, checked as the admin API
checks a policy (SPEC §9.6)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from outlay.config_values import ConfigError
from outlay.policy.model import PolicyError, check_scope_policy, parse_policy, parse_scope

__all__ = ["default_policy", "policies", "vendor_names"]


def vendor_names(raw: object) -> tuple[str, ...]:
    """The vendors a policy may name: the built-in ones and those configured."""
    configured = tuple(str(name) for name in raw) if isinstance(raw, dict) else ()
    return ("stripe", "twilio", "resend", *configured)


def policies(raw: object, where: str, vendors: tuple[str, ...]) -> dict[str, Mapping[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}")
    found: dict[str, Mapping[str, Any]] = {}
    for scope, policy in raw.items():
        try:
            scope_name = parse_scope(str(scope))
            check_scope_policy(scope_name, parse_policy(policy, vendors))
        except PolicyError as exc:
            raise ConfigError(f"{where}.{scope}: {exc}") from None
        found[scope_name] = policy or {}
    return found


def default_policy(raw: object, where: str) -> Mapping[str, Any] | None:
    if raw is None:
        return None
    try:
        parse_policy(raw)
    except PolicyError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    assert isinstance(raw, dict)
    return MappingProxyType(raw)
