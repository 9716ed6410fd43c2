"""The shipped catalogue of each built-in vendor's endpoints (catalogue.yaml): the endpoints
Outlay prices, and how, and those that move no money. Anything else has no known price.
Pure: read once from the package's data file."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from outlay.vendors.base import VendorCall, path_glob, route_path

_METHOD = re.compile(r"[A-Z]+")


@dataclass(frozen=True)
class Endpoint:
    method: str  # upper-case
    path: str  # the pattern as written
    pattern: re.Pattern[str]
    how: str | None  # how a priced endpoint is priced; None: it moves no money


def find(endpoints: Sequence[Endpoint], call: VendorCall) -> Endpoint | None:
    """The first endpoint `call` is (priced ones are listed first), or None."""
    method, path = call.method.upper(), route_path(call.path)
    for endpoint in endpoints:
        if endpoint.method == method and endpoint.pattern.fullmatch(path):
            return endpoint
    return None


@cache
def catalogue() -> Mapping[str, tuple[Endpoint, ...]]:
    """Each built-in vendor's endpoints, priced first."""
    text = files("outlay.vendors").joinpath("catalogue.yaml").read_text("utf-8")
    return parse(yaml.safe_load(text), "catalogue.yaml")


def parse(raw: Any, where: str) -> dict[str, tuple[Endpoint, ...]]:
    """A catalogue from its YAML; raises ValueError naming a bad entry."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping of vendors")
    out: dict[str, tuple[Endpoint, ...]] = {}
    for vendor, section in raw.items():
        if not isinstance(section, Mapping) or set(section) - {"priced", "free"}:
            raise ValueError(f"{where}.{vendor}: expected `priced` and `free` lists")
        endpoints = []
        for kind in ("priced", "free"):
            for index, entry in enumerate(section.get(kind) or ()):
                endpoints.append(_endpoint(entry, f"{where}.{vendor}.{kind}[{index}]",
                                           priced=kind == "priced"))
        out[str(vendor)] = tuple(endpoints)
    return out


def _endpoint(entry: Any, where: str, *, priced: bool) -> Endpoint:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a mapping")
    method, path, how = entry.get("method"), entry.get("path"), entry.get("how")
    if not isinstance(method, str) or not _METHOD.fullmatch(method):
        raise ValueError(f"{where}.method: expected an upper-case HTTP method, got {method!r}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"{where}.path: expected a path starting with '/', got {path!r}")
    if priced != isinstance(how, str):
        raise ValueError(f"{where}: a priced endpoint says `how`, a free one does not")
    return Endpoint(method, path, path_glob(path), how)
