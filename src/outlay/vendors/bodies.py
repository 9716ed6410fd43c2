"""Reading the fields that set a vendor call's cost from a form-encoded or JSON request body.

Ambiguity is refused rather than resolved: a field given twice, or a JSON key repeated, could
be read one way here and another way by the vendor, and then the reservation would not bound
what the vendor does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, quote_plus, unquote_plus

from outlay.policy.errors import invalid_request
from outlay.vendors.base import VendorCall

BodyKind = Literal["json", "form"]

# A form body with more fields than this is not a request any of these APIs takes.
_MAX_FORM_FIELDS = 10_000


def body_kind(call: VendorCall, default: BodyKind) -> BodyKind:
    """How the body is encoded, from its Content-Type; `default` when none is given."""
    media = call.content_type.split(";", 1)[0].strip().lower()
    if not media:
        return default
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if media == "application/x-www-form-urlencoded":
        return "form"
    raise invalid_request(
        f"Outlay cannot read the cost of a call from a `{media}` body; "
        "send it form-encoded or as JSON."
    )


def read_json(call: VendorCall) -> Any:
    """The JSON body; 400 for invalid JSON, repeated keys or NaN/Infinity."""
    try:
        return json.loads(_text(call), object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except RecursionError:
        raise invalid_request("The request body is nested too deeply.") from None
    except ValueError as exc:
        raise invalid_request(f"The request body is not valid JSON: {exc}") from None


def read_form(call: VendorCall) -> dict[str, list[str]]:
    """The form body as name -> values in order; 400 when it cannot be decoded."""
    try:
        pairs = parse_qsl(
            _text(call),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        raise invalid_request(f"The form-encoded request body cannot be read: {exc}") from None
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form


class Fields:
    """Top-level fields of a form body or a JSON object; a field given twice is refused."""

    def __init__(self, kind: BodyKind, values: Mapping[str, list[Any]]) -> None:
        self.kind = kind
        self._values = values

    @classmethod
    def of(cls, call: VendorCall, default: BodyKind) -> Fields:
        """The body's fields; a JSON body must be an object. An empty body has none, whatever
        its type says (a POST without parameters, whose client may name no type)."""
        if not call.body:
            return cls(default, {})
        kind = body_kind(call, default)
        if kind == "form":
            return cls(kind, read_form(call))
        data = read_json(call)
        if not isinstance(data, dict):
            raise invalid_request("The request body must be a JSON object.")
        return cls(kind, {name: [value] for name, value in data.items()})

    def get(self, name: str, *, any_case: bool = False) -> Any:
        """The value of `name` (None when absent); 400 when given more than once.

        `any_case` also matches `name` in another case, for vendors whose parameter names may
        be matched loosely: two spellings of one field are then one field given twice.
        """
        if any_case:
            wanted = name.lower()
            found = [
                value
                for key, values in self._values.items()
                if key.lower() == wanted
                for value in values
            ]
        else:
            found = list(self._values.get(name, ()))
        if len(found) > 1:
            raise invalid_request(f"`{name}` is given more than once.", name)
        return found[0] if found else None


def with_form_field(body: bytes, name: str, value: str) -> bytes:
    """A form body with every `name` pair (in any case) replaced by one, other bytes kept."""
    wanted = name.lower()
    kept = [
        pair
        for pair in body.split(b"&")
        if pair and unquote_plus(pair.split(b"=", 1)[0].decode("utf-8")).lower() != wanted
    ]
    kept.append(quote_plus(name).encode("ascii") + b"=" + quote_plus(value).encode("ascii"))
    return b"&".join(kept)


def _text(call: VendorCall) -> str:
    try:
        return call.body.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_request("The request body is not valid UTF-8.") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"key {key!r} is repeated")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")
