"""One immutable Settings object, built from outlay.yaml, OUTLAY_* variables and CLI flags.

Precedence, lowest first: defaults, the YAML file, the environment, command-line flags.
The file is the one passed in, else ``$OUTLAY_CONFIG``, else ``outlay.yaml`` in the working
directory when it exists (no file at all is fine: the defaults serve a simulated provider).

Environment variables (an empty value counts as unset):

    OUTLAY_CONFIG               path of the YAML file, when none is passed
    OUTLAY_LISTEN               host:port, or [ipv6]:port
    OUTLAY_STATE                sqlite:///outlay.db, redis://…
    OUTLAY_DATABASE             postgresql://… (durable store beside a redis state)
    OUTLAY_ADMIN_TOKEN          the admin API token
    OUTLAY_WORKERS              worker processes
    OUTLAY_MAX_BODY_BYTES       largest accepted request body
    OUTLAY_SIMULATED_LATENCY_MS latency of the simulated provider
    OUTLAY_RESERVATION_LEASE_S  how long a reservation may be held before it is charged in full
    OUTLAY_HEADER_TIMEOUT_S     a request head not whole this long after it began: closed
    OUTLAY_IDLE_TIMEOUT_S       a kept-alive connection idle this long: closed
    OUTLAY_BODY_TIMEOUT_S       a body not whole this long after its head: 408, closed
    OUTLAY_MAX_CONNECTIONS      open connections per worker; past it new ones are closed
    OUTLAY_METRICS_TOKEN        when set, GET /metrics needs `Authorization: Bearer <it>`
    OUTLAY_ADMIN_AUTH_FAILURES  failed admin authentications per address and minute (0: any)
    OUTLAY_APPROVAL_TTL         how long an approval may be decided and used (3600, 90s, 30m, 1h)
    OUTLAY_SECRET_KEY           seals webhook secrets at rest (at least 16 characters)
    OUTLAY_OLD_SECRET_KEYS      earlier secret keys, comma-separated: they still open secrets
    OPENAI_API_KEY, ANTHROPIC_API_KEY
                                used for that provider when the file does not configure it

Any string in the file written ``env:NAME`` is a reference, resolved from the environment;
an unset variable reads as null, so an endpoint whose key is unset is dropped, not an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from outlay import config_values as cv
from outlay.config_policies import default_policy, policies, vendor_names
from outlay.config_providers import PROVIDER_FIELDS, provider_specs
from outlay.config_sections import (
    SIMULATED_PROVIDERS,
    SIMULATED_VENDORS,
    did_you_mean,
    endpoint_limits,
    has_credential,
    service_tier_defaults,
    simulated_sections,
    unset_credentials,
)
from outlay.config_telemetry import TelemetrySettings, telemetry_section
from outlay.config_values import ConfigError, parse_listen
from outlay.policy.model import (
    Policy,
)
from outlay.upstream.providers import Providers, ProviderSpec

__all__ = [
    "DEFAULT_BASE_URLS",
    "ConfigError",
    "EndpointSettings",
    "Settings",
    "load_settings",
    "parse_listen",
]

DEFAULT_BASE_URLS: Mapping[str, str] = MappingProxyType({
    "openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com",
    # OpenAI-compatible APIs of providers the price table knows, by the name it keys them
    "gemini": "https://generativelanguage.googleapis.com/v1beta/openai",
    "mistral": "https://api.mistral.ai/v1", "deepseek": "https://api.deepseek.com/v1",
    "groq": "https://api.groq.com/openai/v1", "together": "https://api.together.xyz/v1",
    "xai": "https://api.x.ai/v1", "openrouter": "https://openrouter.ai/api/v1",
})
DEFAULT_CONFIG_FILE = "outlay.yaml"

# The official SDKs' own variables; only the keys are read. OPENAI_BASE_URL is deliberately
# ignored: agents set it to point at this gateway, and following it would loop.
_PLAIN_ENV_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

_TOP_LEVEL_KEYS = frozenset({
    "listen", "state", "database", "admin_token", "workers", "providers", "vendors", "prices",
    "price_snapshot", "policies", "default_policy", "simulated", "max_body_bytes",
    "reservation_lease_s", "approval_ttl", "webhooks", "server", "secret_key",
    "old_secret_keys", "telemetry",
})
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_REF_PREFIX = "env:"


@dataclass(frozen=True)
class EndpointSettings:
    """One upstream endpoint of a provider; requests are spread over endpoints by weight."""

    base_url: str | None
    api_key: str | None
    weight: int = 1
    api_version: str | None = None  # Azure OpenAI: the api-version every call is sent with
    limits: Policy | None = None  # the upstream key's own rpm, tpm, max_parallel (pacing)


def _frozen_empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Settings:
    """Everything the gateway needs to start, validated; read-only once built.

    The raw sections (vendors, prices, policies) hold plain JSON-like values, copies made
    for this object, so they can be handed to ``parse_policy`` or ``json.dumps`` as they are.
    """

    host: str = "127.0.0.1"
    port: int = 8800
    state: str = "sqlite:///outlay.db"
    database: str | None = None
    admin_token: str | None = None
    workers: int = 1
    providers: Mapping[str, tuple[EndpointSettings, ...]] = field(default_factory=_frozen_empty)
    # every provider section's type, model patterns, `free` and Azure deployments
    provider_specs: Mapping[str, ProviderSpec] = field(default_factory=_frozen_empty)
    # the service tier each provider's account puts a request for `auto` (or none) in
    service_tier_defaults: Mapping[str, str] = field(default_factory=_frozen_empty)
    vendors: Mapping[str, Mapping[str, Any]] = field(default_factory=_frozen_empty)
    prices: Mapping[str, Any] = field(default_factory=_frozen_empty)
    price_snapshot: str | None = None  # a snapshot from `outlay prices update`, not the shipped
    policies: Mapping[str, Mapping[str, Any]] = field(default_factory=_frozen_empty)
    config_file: str | None = None  # the file read, absolute; it manages `policies`' scopes
    simulated_latency_ms: float = 0.0
    max_body_bytes: int = 4 * 1024 * 1024
    reservation_lease_s: float = 900.0
    approval_ttl: float = 3600.0  # seconds an approval may be decided and used after it opens
    # webhook delivery (the `webhooks:` section of the file)
    webhook_timeout_s: float = 10.0  # per attempt, connect to last byte
    webhook_concurrency: int = 8  # sends in flight at once, per worker
    webhook_retry_hours: float = 26.0  # retried until then after the event (SPEC: >= 24)
    webhook_retention_days: float = 30.0  # finished deliveries are kept this long
    # serving connections (the `server:` section), on Outlay's HTTP/1.1 server and aiohttp's
    header_timeout_s: float = 15.0  # a request head must be whole this long after it began
    idle_timeout_s: float = 75.0  # between requests on a kept-alive connection
    body_timeout_s: float = 60.0  # a body must be whole this long after its head, else 408
    max_connections: int = 10_000  # per worker; past it new connections are closed at once
    metrics_token: str | None = field(default=None, repr=False)  # GET /metrics needs it
    # a stream whose agent hung up is read on for the usage the provider reports at its end,
    # for at most this long and this many bytes; then the upstream is closed
    abandoned_stream_s: float = 300.0
    abandoned_stream_bytes: int = 16 * 1024 * 1024
    # the providers and vendors whose section says `simulate: true`
    simulate: frozenset[str] = frozenset()
    # the policy every new agent gets (a typo'd agent name lands under these caps)
    default_policy: Mapping[str, Any] | None = None
    admin_auth_failures: int = 100  # per client address and minute, then 429; 0: no limit
    queue_max_waiting: int = 1000  # calls of a worker waiting for room (on_rate_limit: queue)
    # webhook secrets are sealed at rest with it; older keys only open what they sealed
    secret_key: str | None = field(default=None, repr=False)
    old_secret_keys: tuple[str, ...] = field(default=(), repr=False)
    telemetry: TelemetrySettings | None = None  # each call's span over OTLP/HTTP; None: off

    @property
    def simulated(self) -> bool:
        """True when no provider endpoint is configured, so the simulated provider serves."""
        # Endpoints without a usable key or base URL were already dropped at load time.
        return not any(self.providers.values())

    @property
    def routing(self) -> Providers:
        """Which provider serves a request's model (upstream/providers.py)."""
        return Providers(self.provider_specs)

    @property
    def real_vendors(self) -> Mapping[str, Mapping[str, Any]]:
        """The vendor sections that may name a real vendor: all but `simulate: true` ones."""
        return {name: section for name, section in self.vendors.items()
                if name not in self.simulate}

    def simulated_upstreams(self) -> list[str]:
        """The providers and built-in vendors the simulator serves, by name."""
        providers = [name for name in SIMULATED_PROVIDERS
                     if self.simulated or name in self.simulate]
        providers += sorted(name for name in self.provider_specs
                            if name in self.simulate and name not in SIMULATED_PROVIDERS)
        vendors = [name for name in SIMULATED_VENDORS
                   if name in self.simulate or not has_credential(self.vendors.get(name))]
        return providers + vendors

    @property
    def listen(self) -> str:
        """The listen address as written in config: ``host:port``, brackets around IPv6."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# Every single-valued setting and its converter, for the file, environment and flags alike.
_CONVERTERS: dict[str, Callable[[object, str], Any]] = {
    "host": cv.bind_host,
    "port": cv.port_number,
    "state": cv.url_text,
    "database": cv.url_text,
    "admin_token": cv.credential,
    "workers": cv.integer(1),
    "max_body_bytes": cv.integer(1),
    "simulated_latency_ms": cv.real(0),
    "reservation_lease_s": cv.real(0.001),
    "header_timeout_s": cv.real(0.001),
    "idle_timeout_s": cv.real(0.001),
    "body_timeout_s": cv.real(0.001),
    "max_connections": cv.integer(1),
    "admin_auth_failures": cv.integer(0),
    "queue_max_waiting": cv.integer(0),
    "metrics_token": cv.bearer_token,
    "abandoned_stream_s": cv.real(0),
    "abandoned_stream_bytes": cv.integer(0),
    "approval_ttl": cv.duration,
    "price_snapshot": cv.nonempty_text,
    "secret_key": cv.bearer_token,
    "old_secret_keys": cv.bearer_tokens,
}
# Host and port come from `listen` / OUTLAY_LISTEN, and the latency from `simulated:` in the
# file: one spelling per place, so two values can never disagree.
_ENV_VARIABLES = {name: f"OUTLAY_{name.upper()}" for name in (
    "state", "database", "admin_token", "workers", "max_body_bytes", "simulated_latency_ms",
    "reservation_lease_s", "header_timeout_s", "idle_timeout_s", "body_timeout_s",
    "max_connections", "metrics_token", "abandoned_stream_s", "abandoned_stream_bytes",
    "admin_auth_failures", "approval_ttl", "price_snapshot", "secret_key", "old_secret_keys",
)}
_FILE_KEYS = ("state", "database", "admin_token", "workers", "max_body_bytes",
              "reservation_lease_s", "approval_ttl", "price_snapshot", "secret_key",
              "old_secret_keys")


# --- the file ---


def _config_path(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    if path is not None:
        return Path(path)
    if env.get("OUTLAY_CONFIG"):
        return Path(env["OUTLAY_CONFIG"])
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    unknown = sorted(str(key) for key in set(doc) - _TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(unknown)}"
            f"{did_you_mean(unknown[0], _TOP_LEVEL_KEYS)}; "
            f"known: {', '.join(sorted(_TOP_LEVEL_KEYS))}"
        )
    return doc


def _resolve(value: Any, env: Mapping[str, str], where: str) -> Any:
    """Copy a YAML value, replacing every ``env:NAME`` string by that variable (or None)."""
    if isinstance(value, str) and value.startswith(_REF_PREFIX):
        name = value[len(_REF_PREFIX) :].strip()
        if not name:
            raise ConfigError(f"{where}: 'env:' must be followed by a variable name")
        return env.get(name) or None
    if isinstance(value, dict):
        return {key: _resolve(item, env, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, env, f"{where}[{i}]") for i, item in enumerate(value)]
    return value


def _mapping(value: object, where: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _name(value: object, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(
            f"{where}: {value!r} is not a valid name (lowercase letters, digits, '_', '-', '.')"
        )
    return value


def _endpoint(raw: object, provider: str, where: str) -> EndpointSettings | None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping like {{base_url: …, api_key: …}}")
    unknown = sorted(str(key) for key in set(raw) - {"base_url", "api_key", "weight",
                                                      "api_version", "limits"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    base_url = (None if raw.get("base_url") is None
                else cv.url_text(raw["base_url"], f"{where}.base_url"))
    api_key = (None if raw.get("api_key") is None
               else cv.nonempty_text(raw["api_key"], f"{where}.api_key"))
    weight = cv.integer(1)(raw.get("weight", 1), f"{where}.weight")
    limits = endpoint_limits(raw.get("limits"), f"{where}.limits")
    # A key that was configured but resolved to nothing (an unset env: reference) means this
    # endpoint is not usable in this environment: skip it rather than call it unauthenticated.
    if "api_key" in raw and api_key is None:
        return None
    if base_url is None and api_key is None:
        return None
    if base_url is None:
        base_url = DEFAULT_BASE_URLS.get(provider)
        if base_url is None:
            raise ConfigError(f"{where}.base_url is required: provider {provider!r} has no "
                              f"default{did_you_mean(provider, DEFAULT_BASE_URLS)}")
    api_version = (None if raw.get("api_version") is None
                   else cv.nonempty_text(raw["api_version"], f"{where}.api_version"))
    return EndpointSettings(base_url=base_url, api_key=api_key, weight=weight,
                            api_version=api_version, limits=limits)


def _providers(
    raw: object, env: Mapping[str, str], where: str
) -> dict[str, tuple[EndpointSettings, ...]]:
    providers: dict[str, tuple[EndpointSettings, ...]] = {}
    for name, section in _mapping(raw, where).items():
        here = f"{where}.{_name(name, where)}"
        section = _mapping(section, here)
        cv.known_fields(section, sorted(PROVIDER_FIELDS), here)
        if section.get("simulate") is True:
            continue  # served by the simulator, whatever endpoints it lists
        endpoints_raw = section.get("endpoints")
        if endpoints_raw is None:
            endpoints_raw = []
        if not isinstance(endpoints_raw, list):
            raise ConfigError(f"{here}.endpoints must be a list")
        endpoints = [
            _endpoint(item, name, f"{here}.endpoints[{i}]") for i, item in enumerate(endpoints_raw)
        ]
        usable = tuple(endpoint for endpoint in endpoints if endpoint is not None)
        if usable:
            providers[name] = usable
    configured = set(_mapping(raw, where))
    for name, variable in _PLAIN_ENV_KEYS.items():
        if name not in configured and env.get(variable):
            providers[name] = (EndpointSettings(DEFAULT_BASE_URLS[name], env[variable]),)
    return providers


def _vendors(raw: object, where: str) -> dict[str, Mapping[str, Any]]:
    vendors: dict[str, Mapping[str, Any]] = {}
    for name, section in _mapping(raw, where).items():
        here = f"{where}.{_name(name, where)}"
        if not isinstance(section, dict):
            raise ConfigError(f"{here} must be a mapping like {{base_url: …, secret: …}}")
        vendors[name] = section
    return vendors


# The sections of single values: field -> (Settings field, converter)
_Section = Mapping[str, tuple[str, Callable[[object, str], Any]]]
_SIMULATED_FIELDS: _Section = {"latency_ms": ("simulated_latency_ms", cv.real(0))}
_WEBHOOK_FIELDS: _Section = {
    "timeout_s": ("webhook_timeout_s", cv.real(0.001)),
    "concurrency": ("webhook_concurrency", cv.integer(1)),
    "retry_hours": ("webhook_retry_hours", cv.real(24)),  # SPEC §5: at least 24 h
    "retention_days": ("webhook_retention_days", cv.real(0.001)),
}
# the same names as the Settings fields: one converter each, shared with the environment
_SERVER_FIELDS: _Section = {
    name: (name, _CONVERTERS[name]) for name in
    ("header_timeout_s", "idle_timeout_s", "body_timeout_s", "max_connections", "metrics_token",
     "abandoned_stream_s", "abandoned_stream_bytes", "admin_auth_failures", "queue_max_waiting")
}


def _section(raw: object, where: str, fields: _Section) -> dict[str, Any]:
    """The Settings values a section gives (null leaves a default in place)."""
    section = _mapping(raw, where)
    cv.known_fields(section, fields, where)
    return {name: convert(section[key], f"{where}.{key}")
            for key, (name, convert) in fields.items()
            if section.get(key) is not None}


def _scalars_from_file(doc: Mapping[str, Any], source: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if doc.get("listen") is not None:
        values["host"], values["port"] = parse_listen(doc["listen"], f"{source}: listen")
    for name in _FILE_KEYS:
        # null (or an unset env: reference) leaves the default in place.
        if doc.get(name) is not None:
            values[name] = _CONVERTERS[name](doc[name], f"{source}: {name}")
    return values


def _scalars_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if env.get("OUTLAY_LISTEN"):
        values["host"], values["port"] = parse_listen(env["OUTLAY_LISTEN"], "OUTLAY_LISTEN")
    for name, variable in _ENV_VARIABLES.items():
        if env.get(variable):
            values[name] = _CONVERTERS[name](env[variable], variable)
    return values


def _scalars_from_cli(overrides: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(_CONVERTERS))
    if unknown:
        raise TypeError(f"load_settings() got unknown override(s): {', '.join(unknown)}")
    return {
        name: _CONVERTERS[name](value, f"--{name.replace('_', '-')}")
        for name, value in overrides.items()
        if value is not None
    }


def load_settings(
    path: str | os.PathLike[str] | None, env: Mapping[str, str], **cli_overrides: Any
) -> Settings:
    """Build Settings from the YAML file at ``path``, then ``env``, then ``cli_overrides``.

    ``cli_overrides`` take Settings field names (host, port, state, database, admin_token,
    workers, max_body_bytes, simulated_latency_ms, reservation_lease_s, and the fields of
    the `server:` section); None means "not given". Raises ConfigError naming the file,
    variable or flag and the key at fault.
    """
    config_path = _config_path(path, env)
    doc: dict[str, Any] = {}
    source = "config"
    simulate: frozenset[str] = frozenset()
    if config_path is not None:
        source = str(config_path)
        raw = _read_file(config_path)
        unset_credentials(raw, env, source)
        simulate = simulated_sections(raw, source)
        doc = _resolve(raw, env, source)
    values: dict[str, Any] = {
        **_scalars_from_file(doc, source),
        **_section(doc.get("simulated"), f"{source}: simulated", _SIMULATED_FIELDS),
        **_section(doc.get("webhooks"), f"{source}: webhooks", _WEBHOOK_FIELDS),
        **_section(doc.get("server"), f"{source}: server", _SERVER_FIELDS),
        **_scalars_from_env(env),
        **_scalars_from_cli(cli_overrides),
    }
    return Settings(
        providers=MappingProxyType(_providers(doc.get("providers"), env, f"{source}: providers")),
        provider_specs=MappingProxyType(
            provider_specs(doc.get("providers"), f"{source}: providers")),
        service_tier_defaults=MappingProxyType(
            service_tier_defaults(doc.get("providers"), f"{source}: providers")),
        vendors=MappingProxyType(_vendors(doc.get("vendors"), f"{source}: vendors")),
        prices=MappingProxyType(_mapping(doc.get("prices"), f"{source}: prices")),
        policies=MappingProxyType(policies(doc.get("policies"), f"{source}: policies",
                                           vendor_names(doc.get("vendors")))),
        config_file=None if config_path is None else str(config_path.resolve()),
        simulate=simulate,
        default_policy=default_policy(doc.get("default_policy"), f"{source}: default_policy"),
        telemetry=telemetry_section(doc.get("telemetry"), f"{source}: telemetry"),
        **values,
    )
