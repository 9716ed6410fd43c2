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
    OUTLAY_APPROVAL_TTL         how long an approval may be decided and used (3600, 90s, 30m, 1h)
    OPENAI_API_KEY, ANTHROPIC_API_KEY
                                used for that provider when the file does not configure it

Any string in the file written ``env:NAME`` is a reference, resolved from the environment;
an unset variable reads as null, so an endpoint whose key is unset is dropped, not an error.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from outlay.policy.model import PolicyError, parse_policy, parse_scope

__all__ = [
    "DEFAULT_BASE_URLS",
    "ConfigError",
    "EndpointSettings",
    "Settings",
    "load_settings",
    "parse_listen",
]

DEFAULT_BASE_URLS: Mapping[str, str] = MappingProxyType(
    {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
)
DEFAULT_CONFIG_FILE = "outlay.yaml"

# The official SDKs' own variables; only the keys are read. OPENAI_BASE_URL is deliberately
# ignored: agents set it to point at this gateway, and following it would loop.
_PLAIN_ENV_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

_TOP_LEVEL_KEYS = frozenset(
    {
        "listen",
        "state",
        "database",
        "admin_token",
        "workers",
        "providers",
        "vendors",
        "prices",
        "policies",
        "simulated",
        "max_body_bytes",
        "reservation_lease_s",
        "approval_ttl",
        "webhooks",
    }
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_REF_PREFIX = "env:"


class ConfigError(ValueError):
    """Configuration that cannot be used; the message names the file or variable and the key."""


@dataclass(frozen=True)
class EndpointSettings:
    """One upstream endpoint of a provider; requests are spread over endpoints by weight."""

    base_url: str | None
    api_key: str | None
    weight: int = 1


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
    vendors: Mapping[str, Mapping[str, Any]] = field(default_factory=_frozen_empty)
    prices: Mapping[str, Any] = field(default_factory=_frozen_empty)
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

    @property
    def simulated(self) -> bool:
        """True when no provider endpoint is configured, so the simulated provider serves."""
        # Endpoints without a usable key or base URL were already dropped at load time.
        return not any(self.providers.values())

    @property
    def listen(self) -> str:
        """The listen address as written in config: ``host:port``, brackets around IPv6."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


# --- converters: each takes a value and the place it came from, for the error message ---


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _host(value: object, where: str) -> str:
    text = _text(value, where)
    # `--host [::1]` is how people copy an IPv6 address out of a URL; bind wants it bare.
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def _url(value: object, where: str) -> str:
    text = _text(value, where)
    if "://" not in text:
        raise ConfigError(f"{where} must be a URL such as sqlite:///outlay.db, got {text!r}")
    return text


def _number(value: object, where: str, *, integer: bool, minimum: float) -> float:
    parsed: object = value
    if isinstance(value, str):  # environment variables and flags arrive as text
        try:
            parsed = int(value) if integer else float(value)
        except ValueError:
            parsed = None
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if (
        isinstance(parsed, bool)
        or not isinstance(parsed, int | float)
        or not isinstance(parsed, kinds)
        or not math.isfinite(parsed)
        or parsed < minimum
    ):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where} must be {kind} >= {minimum:g}, got {value!r}")
    return parsed


def _int(minimum: int) -> Callable[[object, str], int]:
    return lambda value, where: int(_number(value, where, integer=True, minimum=minimum))


def _float(minimum: float) -> Callable[[object, str], float]:
    return lambda value, where: float(_number(value, where, integer=False, minimum=minimum))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def _duration(value: object, where: str) -> float:
    """Seconds, given as a number or as text with a unit: 3600, "90s", "30m", "1h", "7d"."""
    if isinstance(value, str):
        found = _DURATION.fullmatch(value.strip())
        if found is None:
            raise ConfigError(f"{where} must be seconds or a duration such as 90s, 30m, 1h or "
                              f"7d, got {value!r}")
        value = float(found[1]) * _UNIT_S[found[2]]
    seconds = _number(value, where, integer=False, minimum=0)
    if seconds < 1:
        raise ConfigError(f"{where} must be at least 1 second, got {value!r}")
    return seconds


def _port(value: object, where: str) -> int:
    port = _int(0)(value, where)  # 0 asks the OS for a free port, handy in tests
    if port > 65535:
        raise ConfigError(f"{where} must be a port number up to 65535, got {value!r}")
    return port


def parse_listen(value: object, where: str = "listen") -> tuple[str, int]:
    """Split ``host:port`` or ``[ipv6]:port`` into (host, port); IPv6 hosts lose the brackets."""
    text = _text(value, where)
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:  # a bare IPv6 address: its colons make the port ambiguous
            sep = ""
    if not sep or not host or not port:
        raise ConfigError(f"{where} must be host:port or [ipv6]:port, got {text!r}")
    return host, _port(port, f"{where} port")


# Every single-valued setting and its converter, for the file, environment and flags alike.
_CONVERTERS: dict[str, Callable[[object, str], Any]] = {
    "host": _host,
    "port": _port,
    "state": _url,
    "database": _url,
    "admin_token": _text,
    "workers": _int(1),
    "max_body_bytes": _int(1),
    "simulated_latency_ms": _float(0),
    "reservation_lease_s": _float(0.001),
    "approval_ttl": _duration,
}
# Host and port come from `listen` / OUTLAY_LISTEN, and the latency from `simulated:` in the
# file: one spelling per place, so two values can never disagree.
_ENV_VARIABLES = {
    "state": "OUTLAY_STATE",
    "database": "OUTLAY_DATABASE",
    "admin_token": "OUTLAY_ADMIN_TOKEN",
    "workers": "OUTLAY_WORKERS",
    "max_body_bytes": "OUTLAY_MAX_BODY_BYTES",
    "simulated_latency_ms": "OUTLAY_SIMULATED_LATENCY_MS",
    "reservation_lease_s": "OUTLAY_RESERVATION_LEASE_S",
    "approval_ttl": "OUTLAY_APPROVAL_TTL",
}
_FILE_KEYS = (
    "state",
    "database",
    "admin_token",
    "workers",
    "max_body_bytes",
    "reservation_lease_s",
    "approval_ttl",
)


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
            f"{path}: unknown setting(s) {', '.join(unknown)}; "
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
    unknown = sorted(str(key) for key in set(raw) - {"base_url", "api_key", "weight"})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    base_url = None if raw.get("base_url") is None else _url(raw["base_url"], f"{where}.base_url")
    api_key = None if raw.get("api_key") is None else _text(raw["api_key"], f"{where}.api_key")
    weight = _int(1)(raw.get("weight", 1), f"{where}.weight")
    # A key that was configured but resolved to nothing (an unset env: reference) means this
    # endpoint is not usable in this environment: skip it rather than call it unauthenticated.
    if "api_key" in raw and api_key is None:
        return None
    if base_url is None and api_key is None:
        return None
    if base_url is None:
        base_url = DEFAULT_BASE_URLS.get(provider)
        if base_url is None:
            raise ConfigError(f"{where}.base_url is required: provider {provider!r} has no default")
    return EndpointSettings(base_url=base_url, api_key=api_key, weight=weight)


def _providers(
    raw: object, env: Mapping[str, str], where: str
) -> dict[str, tuple[EndpointSettings, ...]]:
    providers: dict[str, tuple[EndpointSettings, ...]] = {}
    for name, section in _mapping(raw, where).items():
        here = f"{where}.{_name(name, where)}"
        section = _mapping(section, here)
        unknown = sorted(str(key) for key in set(section) - {"endpoints"})
        if unknown:
            raise ConfigError(f"{here}: unknown field(s) {', '.join(unknown)}; use endpoints:")
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


def _policies(raw: object, where: str) -> dict[str, Mapping[str, Any]]:
    policies: dict[str, Mapping[str, Any]] = {}
    for scope, policy in _mapping(raw, where).items():
        try:
            scope_name = parse_scope(str(scope))
            parse_policy(policy)
        except PolicyError as exc:
            raise ConfigError(f"{where}.{scope}: {exc}") from None
        policies[scope_name] = policy or {}
    return policies


# The sections of single values: field -> (Settings field, converter)
_Section = Mapping[str, tuple[str, Callable[[object, str], Any]]]
_SIMULATED_FIELDS: _Section = {"latency_ms": ("simulated_latency_ms", _float(0))}
_WEBHOOK_FIELDS: _Section = {
    "timeout_s": ("webhook_timeout_s", _float(0.001)),
    "concurrency": ("webhook_concurrency", _int(1)),
    "retry_hours": ("webhook_retry_hours", _float(24)),  # SPEC §5: at least 24 h
    "retention_days": ("webhook_retention_days", _float(0.001)),
}


def _section(raw: object, where: str, fields: _Section) -> dict[str, Any]:
    """The Settings values a section gives (null leaves a default in place)."""
    section = _mapping(raw, where)
    unknown = sorted(str(key) for key in set(section) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: "
                          f"{', '.join(fields)}")
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
    workers, max_body_bytes, simulated_latency_ms, reservation_lease_s); None means "not
    given". Raises ConfigError naming the file, variable or flag and the key at fault.
    """
    config_path = _config_path(path, env)
    doc: dict[str, Any] = {}
    source = "config"
    if config_path is not None:
        source = str(config_path)
        doc = _resolve(_read_file(config_path), env, source)
    values: dict[str, Any] = {
        **_scalars_from_file(doc, source),
        **_section(doc.get("simulated"), f"{source}: simulated", _SIMULATED_FIELDS),
        **_section(doc.get("webhooks"), f"{source}: webhooks", _WEBHOOK_FIELDS),
        **_scalars_from_env(env),
        **_scalars_from_cli(cli_overrides),
    }
    return Settings(
        providers=MappingProxyType(_providers(doc.get("providers"), env, f"{source}: providers")),
        vendors=MappingProxyType(_vendors(doc.get("vendors"), f"{source}: vendors")),
        prices=MappingProxyType(_mapping(doc.get("prices"), f"{source}: prices")),
        policies=MappingProxyType(_policies(doc.get("policies"), f"{source}: policies")),
        config_file=None if config_path is None else str(config_path.resolve()),
        **values,
    )
