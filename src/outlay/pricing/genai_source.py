"""The price snapshot drawn from the `genai-prices` package (a maintained database of LLM
prices): its OpenAI and Anthropic text models, and the current ones of the OpenAI-compatible
providers in OTHER_PROVIDERS (keyed `<provider>/<model>`), at the prices in force on a given
day, in the shape of prices.yaml entries.

`outlay prices update` writes it from the installed package (or a genai-prices data file), and
the package ships one (prices.snapshot.yaml). Reading genai-prices' objects is duck-typed, so
nothing here needs the package unless a snapshot is being made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

SOURCE = "genai-prices"
PROVIDERS = ("openai", "anthropic")
# genai-prices provider id -> Outlay's provider name, and the prefixes of the model names its
# OpenAI-compatible API serves (None: every model); their deprecated models are left out
OTHER_PROVIDERS: Mapping[str, tuple[str, tuple[str, ...] | None]] = {
    "google": ("gemini", ("gemini-", "gemma-")),  # its table also lists Vertex's Claude
    "mistral": ("mistral", None),
    "deepseek": ("deepseek", None),
    "groq": ("groq", None),
    "together": ("together", None),
    "x-ai": ("xai", None),
}
# Not text or embedding models, which Outlay's LLM routes do not serve: images, sound, realtime
# sessions, fine-tune name patterns
_NOT_SERVED = ("image", "audio", "realtime", "transcribe", "tts", "whisper", "live",
               "moderation", "computer-use", "ft:", ".ft-", "search-preview")
# genai-prices field -> prices.yaml field
_FIELDS = (("input_mtok", "input"), ("cache_read_mtok", "cached_input"),
           ("cache_write_mtok", "cache_write"), ("output_mtok", "output"))
# price variants that are service tiers Outlay prices, by the request context they match
_TIERS = {"openai": {("service_tier", "flex"): "flex", ("service_tier", "priority"): "priority"},
          "anthropic": {("processing", "batch"): "batch"}}


def snapshot(providers: Iterable[Any], version: str, on: date) -> dict[str, Any]:
    """The snapshot document: where it comes from, and every served model's prices."""
    models: dict[str, Any] = {}
    for provider in providers:
        if provider.id in PROVIDERS:
            for model in provider.models:
                entry = model_entry(provider.id, model, on)
                if entry is not None:
                    models[model.id] = entry
        elif provider.id in OTHER_PROVIDERS:
            name, prefixes = OTHER_PROVIDERS[provider.id]
            for model in provider.models:
                if getattr(model, "deprecated", False) or (
                        prefixes is not None and not str(model.id).startswith(prefixes)):
                    continue
                entry = model_entry(name, model, on)
                # a text model without an output price is not priced, not free
                if entry is not None and (entry["output"] != "0" or "embed" in model.id):
                    models[f"{name}/{model.id}"] = entry
    return {"source": SOURCE, "version": version, "generated": on.isoformat(),
            "models": dict(sorted(models.items()))}


def model_entry(provider: str, model: Any, on: date) -> dict[str, Any] | None:
    """One model as a prices.yaml entry; None when it is not served or not priced per token."""
    name = str(model.id)
    if any(part in name for part in _NOT_SERVED) or name.endswith("-"):
        return None
    prices = in_force(model.prices, on)
    if prices is None or prices.input_mtok is None:
        return None
    entry: dict[str, Any] = {"provider": provider}
    entry.update(_rates(prices))
    entry.setdefault("output", "0")  # embeddings write nothing
    tiers = _length_tiers(prices)
    if tiers:
        entry["tiers"] = tiers
    if model.context_window:
        entry["context_window"] = int(model.context_window)
    service = _service_tiers(provider, model, prices, on)
    if service:
        entry["service_tiers"] = service
    return entry


def in_force(prices: Any, on: date) -> Any:
    """The prices in force on `on`: the last conditional price whose start has come."""
    if not isinstance(prices, list):
        return prices
    found = None
    for conditional in prices:
        if _started(getattr(conditional, "constraint", None), on):
            found = conditional.prices
    return found


def _started(constraint: Any, on: date) -> bool:
    start = getattr(constraint, "start_date", None)
    if constraint is None:
        return True
    return isinstance(start, date) and start <= on


def _usd(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _base(value: Any) -> Decimal | None:
    """A flat price, or the base price of an input-length tiered one."""
    if value is None:
        return None
    return Decimal(value.base) if hasattr(value, "base") else Decimal(value)


def _rates(prices: Any) -> dict[str, str]:
    found = {}
    for theirs, ours in _FIELDS:
        value = _base(getattr(prices, theirs, None))
        if value is not None:
            found[ours] = _usd(value)
    return found


def _length_tiers(prices: Any) -> list[dict[str, Any]]:
    """genai-prices' tiers (crossing one bills every token at its rate, as Outlay's `tiers`
    do), one row per threshold with every field's price past it."""
    thresholds = sorted({tier.start for _, ours in _FIELDS
                         for tier in getattr(getattr(prices, _theirs(ours), None), "tiers", [])})
    rows = []
    for threshold in thresholds:
        row: dict[str, Any] = {"threshold": int(threshold)}
        for theirs, ours in _FIELDS:
            value = getattr(prices, theirs, None)
            if value is None:
                continue
            row[ours] = _usd(_price_past(value, threshold))
        rows.append(row)
    return rows


def _theirs(ours: str) -> str:
    return next(theirs for theirs, name in _FIELDS if name == ours)


def _price_past(value: Any, threshold: int) -> Decimal:
    if not hasattr(value, "base"):
        return Decimal(value)
    price = Decimal(value.base)
    for tier in value.tiers:
        if tier.start <= threshold:
            price = Decimal(tier.price)
    return price


def _service_tiers(provider: str, model: Any, base: Any, on: date) -> dict[str, Any]:
    """The variants that are service tiers Outlay knows, their unset prices the base ones."""
    found: dict[str, Any] = {}
    known: Mapping[tuple[str, str], str] = _TIERS.get(provider, {})
    for variant in getattr(model, "price_variants", None) or ():
        if not _started(getattr(variant, "constraint", None), on):
            continue
        for key, value in variant.when.items():
            tier = known.get((key, value))
            if tier is None or variant.prices.input_mtok is None:
                continue
            merged = {theirs: getattr(variant.prices, theirs, None)
                      or getattr(base, theirs, None) for theirs, _ in _FIELDS}
            rates = _rates(_Prices(merged))
            tiers = _length_tiers(_Prices(merged))
            found[tier] = {**rates, **({"tiers": tiers} if tiers else {})}
    return dict(sorted(found.items()))


class _Prices:
    """A variant's prices with the base model's filling what it leaves unset."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        for name, value in fields.items():
            setattr(self, name, value)
