"""Reading Stripe's form parameters and answering Stripe's errors, for the simulated Stripe.

Form bodies use Stripe's bracket syntax (``metadata[order]=42``, ``expand[0]=customer``).
Errors have Stripe's shape, ``{"error": {"type", "message", "param", "code"}}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

MAX_AMOUNT = 99_999_999  # Stripe's ceiling in the smallest currency unit
_CURRENCY = re.compile(r"[a-zA-Z]{3}")
_BRACKETS = re.compile(r"\[([^\]]*)\]")


class StripeError(Exception):
    """A request Stripe refuses, rendered as its error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str = "invalid_request_error",
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": error_type, "message": message, **extra}
        if param is not None:
            self.body["param"] = param
        if code is not None:
            self.body["code"] = code


def decode_form(raw: str) -> dict[str, Any]:
    """Stripe's form encoding as nested values: brackets make objects, numbered ones lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        name = key.split("[", 1)[0]
        parts = [name, *_BRACKETS.findall(key[len(name) :])]
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        # "a[]=x" appends, as Stripe reads it.
        node[parts[-1] or str(len(node))] = value
    return {key: _listify(value) for key, value in root.items()}


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    items = {key: _listify(item) for key, item in value.items()}
    if items and all(key.isdigit() for key in items):
        return [items[key] for key in sorted(items, key=int)]
    return items


def form_text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise StripeError(400, "Invalid request: the body is not UTF-8 form data.") from None


def existing(
    store: Mapping[str, dict[str, Any]], key: str, kind: str, param: str, status: int = 400
) -> dict[str, Any]:
    """The object named ``key``; Stripe answers 404 for one named in the URL, else 400."""
    found = store.get(key)
    if found is None:
        raise StripeError(status, f"No such {kind}: '{key}'", param=param, code="resource_missing")
    return found


def param_string(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise StripeError(400, f"Invalid string: {value!r}", param=name)
    return value


def param_strings(params: Mapping[str, Any], name: str) -> list[str] | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise StripeError(400, f"Invalid array: {name}", param=name)
    return value


def param_int(params: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = params.get(name)
    if value is None or value == "":
        if default is not None:
            return default
        raise StripeError(
            400, f"Missing required param: {name}.", param=name, code="parameter_missing"
        )
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise StripeError(
            400, f"Invalid integer: {value}", param=name, code="parameter_invalid_integer"
        )
    return int(value)


def param_bool(params: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value not in ("true", "false"):
        raise StripeError(400, f"Invalid boolean: {value}", param=name)
    return bool(value == "true")


def param_amount(params: Mapping[str, Any], name: str = "amount",
                 default: int | None = None) -> int:
    """A positive amount in the smallest currency unit (`default` when absent, if given)."""
    amount = param_int(params, name, default)
    if amount < 1:
        raise StripeError(
            400,
            "This value must be greater than or equal to 1.",
            param=name,
            code="parameter_invalid_integer",
        )
    if amount > MAX_AMOUNT:
        raise StripeError(
            400,
            f"Amount must be no more than {MAX_AMOUNT} in the smallest currency unit.",
            param=name,
            code="amount_too_large",
        )
    return amount


def param_currency(params: Mapping[str, Any]) -> str:
    value = params.get("currency")
    if value is None or value == "":
        raise StripeError(
            400, "Missing required param: currency.", param="currency", code="parameter_missing"
        )
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise StripeError(400, f"Invalid currency: {value}.", param="currency")
    return value.lower()


def param_metadata(params: Mapping[str, Any]) -> dict[str, str]:
    value = params.get("metadata")
    if value is None or value == "":
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise StripeError(400, "Invalid object", param="metadata")
    if len(value) > 50:
        raise StripeError(400, "Metadata can have at most 50 keys.", param="metadata")
    for key, item in value.items():
        if len(key) > 40 or len(item) > 500:
            raise StripeError(
                400,
                "Metadata keys must be at most 40 characters and values at most 500.",
                param=f"metadata[{key}]",
            )
    # An empty value unsets a key in Stripe, so it never shows in the object.
    return {key: item for key, item in value.items() if item != ""}


def decline_details(charge: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "generic_decline",
        "message": "Your card was declined.",
        "charge": charge["id"],
    }


def declined(charge_id: str, **extra: Any) -> StripeError:
    return StripeError(
        402,
        "Your card was declined.",
        code="card_declined",
        error_type="card_error",
        decline_code="generic_decline",
        charge=charge_id,
        **extra,
    )
