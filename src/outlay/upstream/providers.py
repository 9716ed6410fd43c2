"""Which provider serves a request's model, and under which name: pure, from the configured
providers (SPEC §9.3).

`<provider>/<model>` goes to that provider with the prefix removed; a plain name goes to the
provider of the route's family whose `models` patterns (or Azure `deployments`) claim it,
else to `openai` (or `anthropic` on the Anthropic routes). Patterns of two providers that
one name could match both are refused when the configuration is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

ProviderType = Literal["openai", "anthropic", "azure"]
Family = Literal["openai", "anthropic"]
PROVIDER_TYPES: tuple[ProviderType, ...] = ("openai", "anthropic", "azure")
# the providers every gateway knows, and the default of their family
DEFAULT_PROVIDERS: Mapping[Family, ProviderType] = {"openai": "openai",
                                                    "anthropic": "anthropic"}
# an Azure deployment name goes into the request path: letters, digits, '.', '_', '-' only
_DEPLOYMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# The routes of this many model names are kept, each at most this long: the names come
# from requests, so neither their number nor their length may grow the memory unbounded
MAX_ROUTES_KEPT = 1024
MAX_NAME_KEPT = 256

__all__ = [
    "DEFAULT_PROVIDERS",
    "PROVIDER_TYPES",
    "Family",
    "ProviderSpec",
    "ProviderType",
    "Providers",
    "RouteError",
    "Target",
    "claim_conflict",
    "patterns_overlap",
]


class RouteError(ValueError):
    """A request's model goes to a provider that does not serve the route it came on."""


@dataclass(frozen=True)
class ProviderSpec:
    """What a provider section says beyond its endpoints."""

    name: str
    type: ProviderType = "openai"
    models: tuple[str, ...] = ()  # glob patterns of the plain model names it serves
    free: bool = False  # a local server: its calls cost nothing
    deployments: tuple[tuple[str, str], ...] = ()  # Azure: model name -> deployment name

    @property
    def family(self) -> Family:
        """The API shape it speaks: Azure OpenAI speaks OpenAI's."""
        return "anthropic" if self.type == "anthropic" else "openai"

    def claims(self, model: str) -> bool:
        """Whether a plain model name is this provider's."""
        return any(fnmatchcase(model, pattern) for pattern in self.patterns)

    @property
    def patterns(self) -> tuple[str, ...]:
        """Its `models` patterns and the model names of its Azure deployments."""
        return (*self.models, *(name for name, _ in self.deployments))

    def deployment(self, model: str) -> str | None:
        """The Azure deployment of `model`: the one configured, else one named as the model."""
        if self.type != "azure":
            return None
        return dict(self.deployments).get(model, model)


@dataclass(frozen=True)
class Target:
    """Where one call goes: its provider, and the model name the provider is sent."""

    provider: ProviderSpec
    model: str
    deployment: str | None = None

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def price_key(self) -> str:
        """The price table's name for the call: plain on the default providers, as OpenAI's
        and Anthropic's models always were; `<provider>/<model>` on any other."""
        if self.provider.name in DEFAULT_PROVIDERS:
            return self.model
        return f"{self.provider.name}/{self.model}"


@dataclass(frozen=True)
class Providers:
    """Every provider a request may go to, by name; `openai` and `anthropic` always."""

    specs: Mapping[str, ProviderSpec] = field(default_factory=dict)
    # the route of each (model, family, route) asked for: a Target, or the RouteError's
    # message. The specs never change after __post_init__ (a new configuration makes new
    # Providers), so nothing kept here goes stale.
    _kept: dict[tuple[str | None, str, str], Target | str] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        specs = dict(self.specs)
        for name, kind in DEFAULT_PROVIDERS.items():
            specs.setdefault(name, ProviderSpec(name, kind))
        object.__setattr__(self, "specs", specs)

    def names(self) -> list[str]:
        return sorted(self.specs)

    def route(self, model: str | None, family: Family, route: str) -> Target:
        """The provider and upstream model name of a call on a route of `family`; raises
        RouteError when the provider named or claiming the model speaks the other family."""
        key = (model, family, route)
        found = self._kept.get(key)
        if found is None:
            try:
                found = self._route(model, family, route)
            except RouteError as exc:
                found = str(exc)
            if model is None or len(model) <= MAX_NAME_KEPT:
                if len(self._kept) >= MAX_ROUTES_KEPT:
                    self._kept.clear()
                self._kept[key] = found
        if isinstance(found, str):
            raise RouteError(found)
        return found

    def _route(self, model: str | None, family: Family, route: str) -> Target:
        spec: ProviderSpec | None = None
        upstream = model
        if model is not None and "/" in model:
            prefix, rest = model.split("/", 1)
            if prefix in self.specs and rest:
                spec, upstream = self.specs[prefix], rest
        if spec is None and model is not None:
            spec = next((s for s in self.specs.values()
                         if s.family == family and s.claims(model)), None)
        if spec is None:
            spec = self.specs[family]
        if spec.family != family:
            other = "/v1/messages" if spec.family == "anthropic" else "/v1/chat/completions"
            raise RouteError(f"model '{model}' goes to provider '{spec.name}' (type "
                             f"{spec.type}), which does not serve {route}; call {other}")
        name = upstream if upstream is not None else ""
        deployment = spec.deployment(name)
        if deployment is not None and not _DEPLOYMENT.match(deployment):
            raise RouteError(f"model '{model}': {deployment!r} is not an Azure deployment name "
                             f"of provider '{spec.name}' (letters, digits, '.', '_', '-')")
        return Target(spec, name, deployment)

    def provider_of(self, model: str) -> str | None:
        """The provider a `<provider>/<model>` name names, if any."""
        prefix = model.split("/", 1)[0] if "/" in model else None
        return prefix if prefix in self.specs else None


def claim_conflict(specs: Iterable[ProviderSpec]) -> str | None:
    """A sentence naming two providers of one family whose patterns one model name could match
    both (a plain name must go to one provider), or None."""
    found = list(specs)
    for index, first in enumerate(found):
        for second in found[index + 1:]:
            if first.family != second.family:
                continue
            for one in first.patterns:
                for other in second.patterns:
                    if patterns_overlap(one, other):
                        same = "both claim" if one == other else "claim overlapping patterns"
                        return (f"providers {first.name} and {second.name} {same} "
                                f"{one!r}{'' if one == other else f' and {other!r}'}: a plain "
                                "model name must go to one provider; narrow one's `models`, "
                                f"or call them as {first.name}/<model> and {second.name}/<model>")
    return None


# A pattern as a list of tokens: "*", or a set of characters (negated: all but those)
_Token = tuple[bool, frozenset[str]] | Literal["*"]


def _tokens(pattern: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if not tokens or tokens[-1] != "*":
                tokens.append("*")
        elif char == "?":
            tokens.append((True, frozenset()))
        elif char == "[" and (end := _class_end(pattern, i)) is not None:
            tokens.append(_char_class(pattern[i + 1:end]))
            i = end
        else:
            tokens.append((False, frozenset(char)))
        i += 1
    return tokens


def _class_end(pattern: str, start: int) -> int | None:
    """Where a `[...]` class that begins at `start` ends (as fnmatch reads it), or None."""
    j = start + 1
    if j < len(pattern) and pattern[j] == "!":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    end = pattern.find("]", j)
    return None if end < 0 else end


def _char_class(body: str) -> tuple[bool, frozenset[str]]:
    negated = body.startswith("!")
    body = body[1:] if negated else body
    chars: set[str] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = ord(body[i]), ord(body[i + 2])
            chars.update(chr(c) for c in range(low, high + 1))
            i += 3
        else:
            chars.add(body[i])
            i += 1
    return negated, frozenset(chars)


def _meet(one: tuple[bool, frozenset[str]], other: tuple[bool, frozenset[str]]) -> bool:
    """Whether some character is in both sets (the alphabet is unbounded)."""
    (neg1, set1), (neg2, set2) = one, other
    if neg1 and neg2:
        return True
    if neg1:
        return bool(set2 - set1)
    if neg2:
        return bool(set1 - set2)
    return bool(set1 & set2)


def patterns_overlap(one: str, other: str) -> bool:
    """Whether some string matches both glob patterns (`*`, `?`, `[...]`): a search over
    pairs of positions in the two patterns, each step reading one character in both."""
    a, b = _tokens(one), _tokens(other)
    seen: set[tuple[int, int]] = set()
    pending = [(0, 0)]
    while pending:
        i, j = pending.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(a) and j == len(b):
            return True
        star_a = i < len(a) and a[i] == "*"
        star_b = j < len(b) and b[j] == "*"
        if star_a:
            pending.append((i + 1, j))  # the star matches nothing more
        if star_b:
            pending.append((i, j + 1))
        if i == len(a) or j == len(b):
            continue
        # one character read by both: a star stays where it is, a set moves on
        tok_a, tok_b = a[i], b[j]
        if tok_a == "*" and tok_b == "*":
            continue
        if tok_a != "*" and tok_b != "*" and not _meet(tok_a, tok_b):
            continue
        pending.append((i if star_a else i + 1, j if star_b else j + 1))
    return False
