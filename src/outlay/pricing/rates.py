"""The dimensions of an LLM price beyond one per-token rate: service tiers, input-length tiers,
per-use fees of server-side tools and the limits a beta header lifts; parsed from a price
table entry (prices.yaml or `prices:`), with errors naming the field at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from outlay.policy.money import ceil_div, usd_to_micros
from outlay.values import value

RATE_FIELDS = ("input", "cached_input", "cache_write", "cache_write_1h", "output")
# The tier a provider bills when a request asks for none in particular.
BASE_TIERS = {"openai": "default", "anthropic": "standard"}
_LIMIT_FIELDS = ("max_output_tokens", "context_window")


@value
class Rates:
    """Micro-USD per million tokens of each kind of token a call is billed for."""

    input: int
    cached_input: int
    output: int
    cache_write: int  # input written to the prompt cache for 5 minutes
    cache_write_1h: int  # … for an hour

    def dearest_input(self) -> int:
        return max(self.input, self.cache_write, self.cache_write_1h)


@value
class LengthTier:
    """Prices of a whole call whose input passes `threshold` tokens (long-context prices)."""

    threshold: int
    rates: Rates


@value
class TierPrices:
    """The prices of one service tier: its rates, and the rates past its input thresholds."""

    rates: Rates
    long: tuple[LengthTier, ...] = ()

    def at(self, input_tokens: int) -> Rates:
        """The rates a call with this many input tokens pays: those of the highest
        threshold it passes, else the tier's own."""
        found = self.rates
        for tier in self.long:
            if input_tokens > tier.threshold:
                found = tier.rates
        return found


@value
class BetaLimits:
    """What a beta header (`anthropic-beta: context-1m-…`) lifts: None leaves it as it is."""

    max_output_tokens: int | None = None
    context_window: int | None = None


def rates_of(where: str, entry: Mapping[str, Any], provider: str) -> Rates:
    """An entry's rates: `input` and `output` required; `cached_input` defaults to `input`
    (no prompt cache); cache writes to Anthropic's rule (1.25 and 2 times `input`) or to
    `input` elsewhere."""
    for name in ("input", "output"):
        if name not in entry:
            raise ValueError(f"{where}.{name}: required (USD per million tokens)")
    got = {name: _usd(f"{where}.{name}", entry[name]) for name in RATE_FIELDS if name in entry}
    given = got["input"]
    anthropic = provider == "anthropic"
    return Rates(
        input=given,
        cached_input=got.get("cached_input", given),
        output=got["output"],
        cache_write=got.get("cache_write", ceil_div(given * 5, 4) if anthropic else given),
        cache_write_1h=got.get("cache_write_1h", given * 2 if anthropic else given),
    )


def length_tiers(where: str, raw: object, provider: str) -> tuple[LengthTier, ...]:
    """`tiers:` a list of {threshold, input, output, …}, thresholds rising."""
    if not isinstance(raw, list):
        raise ValueError(f"{where}: expected a list of {{threshold: …, input: …, output: …}}")
    tiers: list[LengthTier] = []
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        entry = _mapping(here, item, {"threshold", *RATE_FIELDS})
        if "threshold" not in entry:
            raise ValueError(f"{here}.threshold: required (the input tokens past which these "
                             "prices apply to the whole call)")
        threshold = _count(f"{here}.threshold", entry["threshold"], 1)
        if tiers and threshold <= tiers[-1].threshold:
            raise ValueError(f"{here}.threshold: thresholds must rise, got {threshold} after "
                             f"{tiers[-1].threshold}")
        tiers.append(LengthTier(threshold, rates_of(here, entry, provider)))
    return tuple(tiers)


def service_tiers(where: str, raw: object, provider: str) -> tuple[tuple[str, TierPrices], ...]:
    """`service_tiers:` a mapping of tier name to its rates and its own `tiers`."""
    found: list[tuple[str, TierPrices]] = []
    for name, item in _mapping(where, raw, None).items():
        here = f"{where}.{name}"
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: a service tier's name must be a non-empty string")
        if name == BASE_TIERS.get(provider):
            raise ValueError(f"{here}: the {name!r} tier is the model's own prices; set them "
                             "on the model")
        entry = _mapping(here, item, {"tiers", *RATE_FIELDS})
        long = length_tiers(f"{here}.tiers", entry["tiers"], provider) if "tiers" in entry else ()
        found.append((name, TierPrices(rates_of(here, entry, provider), long)))
    return tuple(found)


def tool_fees(where: str, raw: object) -> tuple[tuple[str, int], ...]:
    """`tool_fees:` a mapping of server-side tool to USD per use."""
    fees = []
    for name, item in _mapping(where, raw, None).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: a tool's name must be a non-empty string")
        fees.append((name, _usd(f"{where}.{name}", item, unit="USD per use")))
    return tuple(sorted(fees))


def betas(where: str, raw: object) -> tuple[tuple[str, BetaLimits], ...]:
    """`betas:` a mapping of beta name (without its date) to the limits it lifts."""
    found = []
    for name, item in _mapping(where, raw, None).items():
        here = f"{where}.{name}"
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: a beta's name must be a non-empty string")
        entry = _mapping(here, item, set(_LIMIT_FIELDS))
        if not entry:
            raise ValueError(f"{here}: expected max_output_tokens or context_window")
        limits = {field: _count(f"{here}.{field}", entry[field], 1) for field in entry}
        found.append((name, BetaLimits(**limits)))
    return tuple(sorted(found, key=lambda pair: pair[0]))


def _mapping(where: str, raw: object, allowed: set[str] | None) -> Mapping[Any, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    if allowed is not None:
        unknown = sorted(str(key) for key in raw if key not in allowed)
        if unknown:
            raise ValueError(f"{where}: unknown field {unknown[0]!r} (expected one of "
                             f"{', '.join(sorted(allowed))})")
    return raw


def _usd(where: str, raw: object, unit: str = "USD per million tokens") -> int:
    try:
        return usd_to_micros(raw)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc} ({unit})") from None


def _count(where: str, raw: object, low: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < low:
        raise ValueError(f"{where}: expected an integer >= {low}, got {raw!r}")
    return raw
