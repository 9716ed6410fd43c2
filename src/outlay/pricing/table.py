"""The LLM price table: the shipped prices.yaml merged with config overrides (SPEC §3).

Resolves a requested model name through its canonical name, an alias or a dated snapshot.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib.resources import files
from typing import Any

import yaml

from outlay.policy.money import ceil_div, micros_to_usd, usd_to_micros
from outlay.pricing import rates as dims
from outlay.pricing.rates import BASE_TIERS, BetaLimits, LengthTier, Rates, TierPrices
from outlay.pricing.sources import Snapshot, combine

PROVIDERS = ("openai", "anthropic")  # the built-in ones; any configured provider may be named
_PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

# A dated snapshot ends in -YYYY-MM-DD (OpenAI) or -YYYYMMDD (Anthropic).
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8})$")
_PRICE_FIELDS = ("input", "cached_input", "cache_write", "cache_write_1h", "output")
_DIMENSIONS = ("tiers", "service_tiers", "tool_fees", "betas")
_MODEL_FIELDS = frozenset(
    {*_PRICE_FIELDS, *_DIMENSIONS, "provider", "max_output_tokens", "context_window", "free",
     "aliases"}
)
# What each limit bounds; a new model must give both (a silent default is a wrong bound).
_LIMITS = {
    "max_output_tokens": "the most output tokens it can write in one call",
    "context_window": "the most input tokens it reads in one call",
}


@dataclass(frozen=True)
class ModelPrice:
    name: str
    provider: str
    input_micros_per_mtok: int  # USD per million tokens x 1e6, exact
    cached_input_micros_per_mtok: int
    output_micros_per_mtok: int
    max_output_tokens: int
    context_window: int
    free: bool = False
    aliases: tuple[str, ...] = ()
    # what writing a token to the prompt cache costs, for 5 minutes and for an hour; None:
    # Anthropic's rule (1.25 and 2 times the input price), the input price elsewhere
    cache_write_micros_per_mtok: int | None = None
    cache_write_1h_micros_per_mtok: int | None = None
    # prices of the whole call once its input passes a threshold (long-context prices)
    long_context: tuple[LengthTier, ...] = ()
    # prices of the service tiers other than the provider's base one (`default`, `standard`)
    service_tiers: tuple[tuple[str, TierPrices], ...] = ()
    # micro-USD per use of each server-side tool (web_search, file_search, …)
    tool_fees: tuple[tuple[str, int], ...] = ()
    # the limits a beta header lifts, by beta name without its date (`context-1m`)
    betas: tuple[tuple[str, BetaLimits], ...] = ()
    # where its figures come from: `prices`, `max_output_tokens`, `context_window` -> source
    sources: tuple[tuple[str, str], ...] = dataclasses.field(default=(), compare=False)

    @property
    def cache_write(self) -> int:
        if self.cache_write_micros_per_mtok is not None:
            return self.cache_write_micros_per_mtok
        if self.provider == "anthropic":
            return ceil_div(self.input_micros_per_mtok * 5, 4)
        return self.input_micros_per_mtok

    @property
    def cache_write_1h(self) -> int:
        if self.cache_write_1h_micros_per_mtok is not None:
            return self.cache_write_1h_micros_per_mtok
        if self.provider == "anthropic":
            return self.input_micros_per_mtok * 2
        return self.input_micros_per_mtok

    @property
    def base_tier(self) -> str:
        return BASE_TIERS.get(self.provider, "default")

    # Derived once per model (a frozen value): every call's estimate and settlement reads them
    @functools.cached_property
    def rates(self) -> Rates:
        """The base tier's rates below any input threshold."""
        return Rates(self.input_micros_per_mtok, self.cached_input_micros_per_mtok,
                     self.output_micros_per_mtok, self.cache_write, self.cache_write_1h)

    @functools.cached_property
    def _tiers(self) -> dict[str | None, TierPrices]:
        """Every priced service tier by name, the base tier under its name and None."""
        base = TierPrices(self.rates, self.long_context)
        return {**dict(self.service_tiers), None: base, self.base_tier: base}

    def tier(self, name: str | None) -> TierPrices | None:
        """The prices of a service tier (None or the base tier: the model's own); None when
        the table does not price that tier."""
        return self._tiers.get(name)

    def fee(self, tool: str) -> int | None:
        """Micro-USD per use of a server-side tool; None when its fee is not known."""
        return self._fees.get(tool)

    @functools.cached_property
    def _fees(self) -> dict[str, int]:
        return dict(self.tool_fees)

    def lifted(self, beta_names: tuple[str, ...]) -> ModelPrice:
        """The model as the request's beta headers make it: their limits, if higher."""
        known = dict(self.betas)
        found = [known[name] for name in beta_names if name in known]
        if not found:
            return self
        outputs = [b.max_output_tokens for b in found if b.max_output_tokens is not None]
        windows = [b.context_window for b in found if b.context_window is not None]
        return replace(self, max_output_tokens=max([self.max_output_tokens, *outputs]),
                       context_window=max([self.context_window, *windows]))

    def to_dict(self) -> dict[str, Any]:
        """The entry in the shape of prices.yaml, USD as decimal strings (so it round-trips)."""
        return {
            "name": self.name,
            "provider": self.provider,
            "input": micros_to_usd(self.input_micros_per_mtok),
            "cached_input": micros_to_usd(self.cached_input_micros_per_mtok),
            "cache_write": micros_to_usd(self.cache_write),
            "cache_write_1h": micros_to_usd(self.cache_write_1h),
            "output": micros_to_usd(self.output_micros_per_mtok),
            "max_output_tokens": self.max_output_tokens,
            "context_window": self.context_window,
            "free": self.free,
            "aliases": list(self.aliases),
            "tiers": [{"threshold": t.threshold, **_rates_dict(t.rates)}
                      for t in self.long_context],
            "service_tiers": {name: _tier_dict(t) for name, t in self.service_tiers},
            "tool_fees": {name: micros_to_usd(fee) for name, fee in self.tool_fees},
            "betas": {name: {k: v for k, v in (("max_output_tokens", b.max_output_tokens),
                                               ("context_window", b.context_window))
                             if v is not None}
                      for name, b in self.betas},
        }


def _rates_dict(rates: Rates) -> dict[str, str]:
    return {"input": micros_to_usd(rates.input),
            "cached_input": micros_to_usd(rates.cached_input),
            "cache_write": micros_to_usd(rates.cache_write),
            "cache_write_1h": micros_to_usd(rates.cache_write_1h),
            "output": micros_to_usd(rates.output)}


def _tier_dict(tier: TierPrices) -> dict[str, Any]:
    found: dict[str, Any] = _rates_dict(tier.rates)
    if tier.long:
        found["tiers"] = [{"threshold": t.threshold, **_rates_dict(t.rates)} for t in tier.long]
    return found


def load_table(overrides: Mapping[str, Any] | None, snapshot_path: str | None) -> PriceTable:
    """The table a gateway runs with: the shipped snapshot, or the one `price_snapshot`
    names, with prices.yaml and the configuration's overrides."""
    snapshot = None if snapshot_path is None else Snapshot.from_file(snapshot_path)
    return PriceTable.load(overrides, snapshot)


class PriceTable:
    """Immutable after load: canonical models plus an alias index."""

    def __init__(self, models: Mapping[str, ModelPrice], aliases: Mapping[str, str]) -> None:
        self._models = dict(models)
        self._aliases = dict(aliases)

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None,
             snapshot: Snapshot | None = None) -> PriceTable:
        """The shipped table with `overrides` (config `prices:`) applied entry by entry.

        The table is the price snapshot (`snapshot`, else the shipped one) with prices.yaml
        over it (sources.combine). An override naming a known model changes only the fields
        it gives; an unknown name adds a model (needing `provider`, and `input` and `output`
        unless `free`); `alias_of` makes the name a pure alias. Raises ValueError naming the
        model and field at fault.
        """
        text = files("outlay.pricing").joinpath("prices.yaml").read_text(encoding="utf-8")
        shipped = yaml.safe_load(text)
        if not isinstance(shipped, Mapping) or not isinstance(shipped.get("models"), Mapping):
            raise ValueError("prices.yaml: expected a `models:` mapping")
        own = {name: dict(_entry(name, raw)) for name, raw in shipped["models"].items()}
        source = snapshot or Snapshot.shipped()
        for name, raw in source.models.items():
            _entry(name, raw)
        entries, origins = combine(source, own)
        fees = {provider: dict(dims.tool_fees(f"prices.yaml: tool_fees.{provider}", raw))
                for provider, raw in (shipped.get("tool_fees") or {}).items()}
        new: set[str] = set()
        if overrides is not None:
            if not isinstance(overrides, Mapping):
                raise ValueError("prices: expected a mapping of model name to fields")
            for name, raw in overrides.items():
                if name not in entries or "alias_of" in entries[name]:
                    new.add(name)
                given = _entry(name, raw)
                _merge(entries, name, given)
                mine = origins.setdefault(name, {}) if name in entries else {}
                for field in ("max_output_tokens", "context_window"):
                    if field in given:
                        mine[field] = "config"
                if name in new or any(f in given for f in _PRICE_FIELDS):
                    mine["prices"] = "config"
        for name in sorted(new):
            _require_limits(name, entries.get(name, {}))
        return _build(entries, fees, origins)

    def resolve(self, model: str) -> ModelPrice | None:
        """The price of `model` given by name, alias or dated snapshot; None when unknown."""
        found = self._lookup(model)
        if found is None:
            base = _SNAPSHOT.sub("", model)
            if base != model:
                found = self._lookup(base)
        return found

    def names(self) -> list[str]:
        return sorted(self._models)

    def aliases(self) -> dict[str, str]:
        return dict(sorted(self._aliases.items()))

    def to_list(self) -> list[dict[str, Any]]:
        return [self._models[name].to_dict() for name in self.names()]

    def _lookup(self, name: str) -> ModelPrice | None:
        return self._models.get(self._aliases.get(name, name))


def _entry(name: object, raw: object) -> Mapping[str, Any]:
    """Check one entry's shape and field types; values stay as written until _build."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"prices: model name must be a non-empty string, got {name!r}")
    where = f"prices.{name}"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping of fields, got {type(raw).__name__}")
    if "alias_of" in raw:
        target = raw["alias_of"]
        if len(raw) != 1:
            extra = sorted(str(key) for key in raw if key != "alias_of")
            raise ValueError(f"{where}: alias_of cannot be combined with {extra}")
        if not isinstance(target, str) or not target:
            raise ValueError(f"{where}.alias_of: expected a model name, got {target!r}")
        return raw
    for field, value in raw.items():
        if field not in _MODEL_FIELDS:
            allowed = ", ".join(sorted(_MODEL_FIELDS | {"alias_of"}))
            raise ValueError(f"{where}: unknown field {field!r} (expected one of {allowed})")
        _check_field(where, field, value)
    return raw


def _check_field(where: str, field: str, value: object) -> None:
    if field in _PRICE_FIELDS:
        try:
            usd_to_micros(value)
        except ValueError as exc:
            raise ValueError(f"{where}.{field}: {exc} (USD per million tokens)") from None
    elif field in ("max_output_tokens", "context_window"):
        low = 0 if field == "max_output_tokens" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{where}.{field}: expected an integer >= {low}, got {value!r}")
    elif field == "provider":
        if not isinstance(value, str) or not _PROVIDER_NAME.match(value):
            raise ValueError(f"{where}.provider: expected a provider name such as "
                             f"{' or '.join(PROVIDERS)}, got {value!r}")
    elif field == "free":
        if not isinstance(value, bool):
            raise ValueError(f"{where}.free: expected true or false, got {value!r}")
    elif field in _DIMENSIONS:
        _dimension(f"{where}.{field}", field, value, "openai")  # the shape, checked early
    elif field == "aliases" and (
        not isinstance(value, list | tuple)
        or not all(isinstance(alias, str) and alias for alias in value)
    ):
        raise ValueError(f"{where}.aliases: expected a list of model names, got {value!r}")


def _dimension(where: str, field: str, raw: object, provider: str) -> Any:
    if field == "tiers":
        return dims.length_tiers(where, raw, provider)
    if field == "service_tiers":
        return dims.service_tiers(where, raw, provider)
    if field == "tool_fees":
        return dims.tool_fees(where, raw)
    return dims.betas(where, raw)


def _require_limits(name: str, entry: Mapping[str, Any]) -> None:
    """A model the configuration adds bounds its calls with its own limits, never a guess."""
    if "alias_of" in entry:
        return
    for field, meaning in _LIMITS.items():
        if field not in entry:
            raise ValueError(f"prices.{name}.{field}: required for a model the price table "
                             f"does not ship ({meaning})")


def _merge(entries: dict[str, dict[str, Any]], name: str, override: Mapping[str, Any]) -> None:
    """Apply one override: field by field onto a model, whole otherwise."""
    current = entries.get(name)
    if current is None:
        for owner, entry in entries.items():
            if name not in entry.get("aliases", ()):
                continue
            if "alias_of" not in override:
                raise ValueError(
                    f"prices.{name}: {name!r} is an alias of {owner!r}; "
                    f"override {owner!r} instead, or repoint it with `alias_of`"
                )
            entry["aliases"] = [alias for alias in entry["aliases"] if alias != name]
    if current is None or "alias_of" in override or "alias_of" in current:
        entries[name] = dict(override)
    else:
        current.update(override)


def _build(entries: Mapping[str, Mapping[str, Any]],
           fees: Mapping[str, Mapping[str, int]],
           origins: Mapping[str, Mapping[str, str]]) -> PriceTable:
    """Turn checked entries into ModelPrices and an alias index with canonical targets."""
    models = {
        name: replace(_model(name, entry, fees),
                      sources=tuple(sorted(origins.get(name, {}).items())))
        for name, entry in entries.items() if "alias_of" not in entry
    }
    aliases: dict[str, str] = {}

    def claim(alias: str, target: str, where: str) -> None:
        if alias in models:
            raise ValueError(f"{where}: {alias!r} is already a model name")
        if aliases.get(alias, target) != target:
            raise ValueError(f"{where}: {alias!r} is also an alias of {aliases[alias]!r}")
        aliases[alias] = target

    for name, model in models.items():
        for alias in model.aliases:
            claim(alias, name, f"prices.{name}.aliases")
    pending = {name: entry["alias_of"] for name, entry in entries.items() if name not in models}
    for name in pending:
        claim(name, _alias_target(name, pending, models, aliases), f"prices.{name}.alias_of")
    return PriceTable(
        {name: _with_aliases(model, aliases) for name, model in models.items()}, aliases
    )


def _alias_target(
    name: str,
    pending: Mapping[str, str],
    models: Mapping[str, ModelPrice],
    aliases: Mapping[str, str],
) -> str:
    """Follow an alias_of chain to a canonical model, refusing cycles and unknown targets."""
    seen = [name]
    target = pending[name]
    while target in pending:
        if target in seen:
            raise ValueError(f"prices.{name}.alias_of: alias cycle {' -> '.join([*seen, target])}")
        seen.append(target)
        target = pending[target]
    resolved = PriceTable(models, aliases).resolve(target)
    if resolved is None:
        raise ValueError(f"prices.{name}.alias_of: unknown model {target!r}")
    return resolved.name


def _model(name: str, entry: Mapping[str, Any],
           fees: Mapping[str, Mapping[str, int]]) -> ModelPrice:
    where = f"prices.{name}"
    free = bool(entry.get("free", False))
    # `groq/llama-3.3-70b-versatile` is a model of provider groq unless it says otherwise
    prefix = name.split("/", 1)[0] if "/" in name else None
    provider = entry.get("provider", prefix if prefix and _PROVIDER_NAME.match(prefix) else None)
    if provider is None:
        raise ValueError(f"{where}.provider: required for a new model ({' or '.join(PROVIDERS)}"
                         ", or the provider a <provider>/<model> name begins with)")
    for field in ("input", "output"):
        if field not in entry and not free:
            raise ValueError(f"{where}.{field}: required (USD per million tokens) unless free")
    input_micros = usd_to_micros(entry.get("input", 0))
    return ModelPrice(
        name=name,
        provider=provider,
        input_micros_per_mtok=input_micros,
        # No prompt caching means a cached token costs what any input token costs.
        cached_input_micros_per_mtok=usd_to_micros(
            entry.get("cached_input", entry.get("input", 0))
        ),
        output_micros_per_mtok=usd_to_micros(entry.get("output", 0)),
        max_output_tokens=entry["max_output_tokens"],
        context_window=entry["context_window"],
        free=free,
        aliases=tuple(entry.get("aliases", ())),
        cache_write_micros_per_mtok=_optional_usd(entry.get("cache_write")),
        cache_write_1h_micros_per_mtok=_optional_usd(entry.get("cache_write_1h")),
        **_dimensions(where, entry, fees, provider),
    )


def _dimensions(where: str, entry: Mapping[str, Any],
                fees: Mapping[str, Mapping[str, int]], provider: str) -> dict[str, Any]:
    """A model's tiers, service tiers, betas and tool fees (its own over its provider's)."""
    found: dict[str, Any] = {}
    for field, name in (("tiers", "long_context"), ("service_tiers", "service_tiers"),
                        ("betas", "betas")):
        if field in entry:
            found[name] = _dimension(f"{where}.{field}", field, entry[field], provider)
    own = dict(dims.tool_fees(f"{where}.tool_fees", entry.get("tool_fees") or {}))
    found["tool_fees"] = tuple(sorted({**fees.get(provider, {}), **own}.items()))
    return found


def _optional_usd(value: object) -> int | None:
    return None if value is None else usd_to_micros(value)


def _with_aliases(model: ModelPrice, aliases: Mapping[str, str]) -> ModelPrice:
    """A model lists every name that resolves to it, `alias_of` entries included."""
    mine = tuple(sorted(alias for alias, target in aliases.items() if target == model.name))
    return replace(model, aliases=mine)
