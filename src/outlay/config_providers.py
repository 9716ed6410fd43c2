"""What a `providers:` section says beyond its endpoints' URLs and keys (SPEC §9.3): each
provider's `type`, the model patterns it serves, whether it is `free`, Azure's `api_version`
and `deployments`; checked whole, so that one bad provider stops the start with one line."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, cast

from outlay.config_values import ConfigError
from outlay.upstream.providers import (
    DEFAULT_PROVIDERS,
    PROVIDER_TYPES,
    ProviderSpec,
    ProviderType,
    claim_conflict,
)

__all__ = ["PROVIDER_FIELDS", "provider_specs"]

# the fields of a provider section
PROVIDER_FIELDS = frozenset({"endpoints", "service_tier_default", "simulate", "type", "models",
                             "free", "deployments"})
_API_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]*$")  # it goes into every query


def provider_specs(raw: object, where: str) -> dict[str, ProviderSpec]:
    """The providers a (resolved) `providers:` section names, each checked; raises
    ConfigError naming the provider and field at fault, or two providers that claim one
    model name."""
    if not isinstance(raw, Mapping):
        return {}  # absent; a section of another shape is refused where it is read
    specs = {str(name): _spec(str(name), section, f"{where}.{name}")
             for name, section in raw.items() if isinstance(section, Mapping)}
    conflict = claim_conflict(specs.values())
    if conflict is not None:
        raise ConfigError(f"{where}: {conflict}")
    return specs


def _spec(name: str, section: Mapping[str, Any], here: str) -> ProviderSpec:
    kind = section.get("type", "anthropic" if name == "anthropic" else "openai")
    if kind not in PROVIDER_TYPES:
        raise ConfigError(f"{here}.type: unknown type {kind!r}; expected one of "
                          f"{', '.join(PROVIDER_TYPES)}")
    simulated = section.get("simulate") is True
    endpoints = section.get("endpoints")
    if endpoints is None:
        endpoints = []
    if not isinstance(endpoints, list):
        raise ConfigError(f"{here}.endpoints must be a list")
    if not endpoints and not simulated and name not in DEFAULT_PROVIDERS:
        raise ConfigError(f"{here}: no endpoints; give endpoints: [{{base_url: …, api_key: …}}]"
                          ", or simulate: true to have the built-in simulator serve it")
    for i, endpoint in enumerate(endpoints):
        if not isinstance(endpoint, Mapping):
            continue  # refused, with its shape, where endpoints are read
        version = endpoint.get("api_version")
        at = f"{here}.endpoints[{i}].api_version"
        if kind == "azure" and not simulated and (not isinstance(version, str) or not version):
            raise ConfigError(f"{at}: required for an azure provider (e.g. \"2024-10-21\")")
        if isinstance(version, str) and not _API_VERSION.match(version):
            raise ConfigError(f"{at}: {version!r} is not an API version such as 2024-10-21")
        if kind != "azure" and version is not None:
            raise ConfigError(f"{at}: only an azure provider takes an api_version")
    free = section.get("free", False)
    if not isinstance(free, bool):
        raise ConfigError(f"{here}.free must be true or false, got {free!r}")
    return ProviderSpec(name, cast(ProviderType, kind), _patterns(section.get("models"), here),
                        free, _deployments(section.get("deployments"), kind, here))


def _patterns(raw: object, here: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(p, str) and p.strip() for p in raw):
        raise ConfigError(f"{here}.models must be a list of model name patterns such as "
                          f"\"llama-*\", got {raw!r}")
    return tuple(raw)


def _deployments(raw: object, kind: str, here: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if kind != "azure":
        raise ConfigError(f"{here}.deployments: only an azure provider has deployments")
    if not isinstance(raw, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in raw.items()):
        raise ConfigError(f"{here}.deployments must map model names to deployment names, "
                          f"such as {{gpt-4o: prod-gpt4o}}, got {raw!r}")
    return tuple(sorted(raw.items()))
