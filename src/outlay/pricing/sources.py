"""Where the shipped table's figures come from: the price snapshot (generated from the
`genai-prices` package) for token prices, long-context tiers, service tiers and context
windows; Outlay's prices.yaml for what the snapshot lacks (output limits, betas, tool fees,
aliases, and whole entries for models the snapshot does not list).

Every model records the source of its prices and of each limit, which
`outlay prices check MODEL` shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import yaml

SNAPSHOT_FILE = "prices.snapshot.yaml"
OWN = "prices.yaml"
# The fields a snapshot gives; prices.yaml's are used for a model the snapshot lists only
# where the snapshot lacks them
SOURCED_FIELDS = frozenset({"input", "cached_input", "cache_write", "cache_write_1h", "output",
                            "tiers", "service_tiers"})
DERIVED_OUTPUT = "derived: no published maximum in the table, the context window bounds it"


@dataclass(frozen=True)
class Snapshot:
    """A price snapshot: its source and version, and its entries by model name."""

    label: str  # e.g. "genai-prices 0.2.5 (2026-12-06)"
    models: Mapping[str, Mapping[str, Any]]

    @classmethod
    def parse(cls, text: str, where: str) -> Snapshot:
        doc = yaml.safe_load(text)
        if not isinstance(doc, Mapping) or not isinstance(doc.get("models"), Mapping):
            raise ValueError(f"{where}: expected a price snapshot with a `models:` mapping")
        for field in ("source", "version", "generated"):
            if not isinstance(doc.get(field), str) or not doc[field]:
                raise ValueError(f"{where}.{field}: expected a non-empty string")
        label = f"{doc['source']} {doc['version']} ({doc['generated']})"
        return cls(label, dict(doc["models"]))

    @classmethod
    def shipped(cls) -> Snapshot:
        text = files("outlay.pricing").joinpath(SNAPSHOT_FILE).read_text(encoding="utf-8")
        return cls.parse(text, SNAPSHOT_FILE)

    @classmethod
    def from_file(cls, path: str) -> Snapshot:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ValueError(f"price_snapshot: cannot read {path!r}: {exc.strerror}") from None
        return cls.parse(text, path)


def combine(snapshot: Snapshot, own: Mapping[str, dict[str, Any]]
            ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]]]:
    """The entries of the snapshot and prices.yaml together, and each model's sources.

    A snapshot name that prices.yaml lists as an alias lands on that model. A model with no
    context window from either is left out (it has no bound: unknown, like any unpriced
    model); one with no output maximum is bounded by its context window, and says so.
    """
    aliases = {alias: name for name, entry in own.items()
               for alias in entry.get("aliases", ())}
    entries: dict[str, dict[str, Any]] = {}
    origins: dict[str, dict[str, str]] = {}
    for name, raw in snapshot.models.items():
        if not isinstance(raw, Mapping):
            raise ValueError(f"{snapshot.label}: models.{name}: expected a mapping")
        target = aliases.get(name, name)
        entries[target] = dict(raw)
        origins[target] = {"prices": snapshot.label}
        if "context_window" in raw:
            origins[target]["context_window"] = snapshot.label
    for name, raw in own.items():
        if name in entries and "alias_of" not in raw:
            # what the snapshot gives wins; prices.yaml fills what it lacks
            mine = {k: v for k, v in raw.items()
                    if k not in SOURCED_FIELDS or k not in entries[name]}
            entries[name].update(mine)
            for field in SOURCED_FIELDS & set(mine):
                origins[name][field] = OWN
        else:
            entries[name] = dict(raw)
            origins[name] = {"prices": OWN}
        for limit in ("max_output_tokens", "context_window"):
            if limit in raw:
                origins[name][limit] = OWN
    for name in list(entries):
        entry = entries[name]
        if "alias_of" in entry:
            origins.pop(name, None)
            continue
        if "context_window" not in entry:
            del entries[name]
            del origins[name]
        elif "max_output_tokens" not in entry:
            entry["max_output_tokens"] = entry["context_window"]
            origins[name]["max_output_tokens"] = DERIVED_OUTPUT
    return entries, origins
