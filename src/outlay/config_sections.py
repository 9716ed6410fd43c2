"""What the provider and vendor sections of a config file say about simulation, read before
`env:` references are resolved: a credential that names an unset variable stops the start
(a real upstream must never be simulated in silence), `simulate: true` opts a section in;
and the service tier a provider's account runs `auto` requests in; an endpoint's limits."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from outlay.config_values import ConfigError
from outlay.policy.model import Policy
from outlay.policy.pacing import parse_limits

__all__ = [
    "CREDENTIAL_FIELDS",
    "SERVICE_TIERS",
    "SIMULATED_PROVIDERS",
    "SIMULATED_VENDORS",
    "did_you_mean",
    "has_credential",
    "service_tier_defaults",
    "simulated_sections",
    "unset_credentials",
]

# The fields of a vendor section that hold its credential (whatever the vendor)
CREDENTIAL_FIELDS = ("secret", "api_key", "account_sid", "auth_token")
# The vendors and providers the built-in simulator can stand in for
SIMULATED_PROVIDERS = ("openai", "anthropic")
SIMULATED_VENDORS = ("stripe", "twilio", "resend")
_REF = "env:"


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """` (did you mean x?)` when a known name is close to `word`; else the empty string."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def has_credential(section: Mapping[str, Any] | None) -> bool:
    """Whether a (resolved) vendor section holds a credential (Twilio: both of its)."""
    if section is None:
        return False
    if "account_sid" in section or "auth_token" in section:
        return bool(section.get("account_sid") and section.get("auth_token"))
    return any(section.get(name) for name in CREDENTIAL_FIELDS)


def _unset(value: object, env: Mapping[str, str]) -> str | None:
    """The variable an `env:NAME` value names when it resolves empty."""
    if isinstance(value, str) and value.startswith(_REF):
        name = value[len(_REF):].strip()
        if name and not env.get(name):
            return name
    return None


def _simulate(section: Mapping[str, Any], where: str) -> bool:
    value = section.get("simulate", False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.simulate must be true or false, got {value!r}")
    return value


def simulated_sections(doc: Mapping[str, Any], source: str) -> frozenset[str]:
    """The providers and vendors whose section says `simulate: true`."""
    found: set[str] = set()
    # any provider: the simulator answers in its type's shape; only the built-in vendors
    for kind, allowed in (("providers", None), ("vendors", SIMULATED_VENDORS)):
        sections = doc.get(kind)
        if not isinstance(sections, Mapping):
            continue
        for name, section in sections.items():
            where = f"{source}: {kind}.{name}"
            if isinstance(section, Mapping) and _simulate(section, where):
                if allowed is not None and name not in allowed:
                    raise ConfigError(
                        f"{where}.simulate: only {', '.join(allowed)} can be simulated")
                found.add(str(name))
    return frozenset(found)


def unset_credentials(doc: Mapping[str, Any], env: Mapping[str, str], source: str) -> None:
    """Stop the start when a provider endpoint's `api_key` or a vendor's credential is an
    `env:` reference to an unset (or empty) variable, naming the section and the variable;
    sections with `simulate: true` are not checked."""
    providers = doc.get("providers")
    if isinstance(providers, Mapping):
        for name, section in providers.items():
            if not isinstance(section, Mapping) or section.get("simulate") is True:
                continue
            endpoints = section.get("endpoints")
            for i, endpoint in enumerate(endpoints if isinstance(endpoints, list) else []):
                if isinstance(endpoint, Mapping):
                    _refuse(_unset(endpoint.get("api_key"), env),
                            f"{source}: providers.{name}.endpoints[{i}].api_key")
    vendors = doc.get("vendors")
    if isinstance(vendors, Mapping):
        for name, section in vendors.items():
            if not isinstance(section, Mapping) or section.get("simulate") is True:
                continue
            for field in CREDENTIAL_FIELDS:
                _refuse(_unset(section.get(field), env), f"{source}: vendors.{name}.{field}")


def _refuse(variable: str | None, where: str) -> None:
    if variable is not None:
        section = where.split(": ", 1)[-1].split(".")[:2]
        raise ConfigError(
            f"{where} is env:{variable}, and {variable} is not set (or empty): set it, or "
            f"add `simulate: true` to {'.'.join(section)} to serve it with the built-in "
            "simulator")


# The tiers a request for `auto` may land in, by provider
SERVICE_TIERS = {"openai": ("default", "flex", "priority", "scale"),
                 "anthropic": ("standard", "priority")}


def service_tier_defaults(raw: object, where: str) -> dict[str, str]:
    """`providers.<name>.service_tier_default`: the tier the provider's account runs a
    request for `auto` in (OpenAI's project setting; Anthropic's priority capacity)."""
    found: dict[str, str] = {}
    if not isinstance(raw, dict):
        return found  # the providers section itself is checked where it is read
    for name, section in raw.items():
        if not isinstance(section, dict):
            continue
        tier = section.get("service_tier_default")
        if tier is None:
            continue
        here = f"{where}.{name}.service_tier_default"
        known = SERVICE_TIERS.get(str(name))
        if not isinstance(tier, str) or not tier or (known is not None and tier not in known):
            expected = f"one of {', '.join(known)}" if known else "a tier name"
            raise ConfigError(f"{here}: expected {expected}, got {tier!r}")
        found[str(name)] = tier
    return found


def endpoint_limits(raw: object, where: str) -> Policy | None:
    """An endpoint's `limits: {rpm, tpm, max_parallel}` (policy/pacing.py), or None."""
    if raw is None:
        return None
    try:
        return parse_limits(raw, where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
