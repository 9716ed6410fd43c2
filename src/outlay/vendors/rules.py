"""A vendor's `rules` in its config section (SPEC §3, §9): they price, or free, the calls
they match, before anything else is asked (built-in vendors' catalogue included).

    vendors:
      acme:
        base_url: https://api.acme.example
        rules:
          - {method: POST, path: "/v1/calls/*", usd: 0.05}                   # fixed per call
          - {method: POST, path: "/v1/jobs", field: units, factor_usd: 0.01}  # field x factor
          - {method: GET, path: "/**", usd: 0}                                # reads are free

The first rule whose method and path match prices the call; a call no rule matches has no
price here (vendors.pricing decides what then). `method` is an HTTP method or `*`. In
`path`, `*` matches within one segment and `**` across segments. `field` names a top-level
form field or a JSON field (`a.b` for a nested one); a rule may give both `usd` and `field`,
and then costs their sum.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from outlay.policy.errors import invalid_request
from outlay.vendors.base import (
    VendorCall,
    VendorEstimate,
    config_usd,
    exact_micros,
    in_range,
    path_glob,
    route_path,
)
from outlay.vendors.bodies import Fields, body_kind, read_form, read_json

_RULE_KEYS = frozenset({"method", "path", "usd", "field", "factor_usd"})
_METHOD = re.compile(r"\*|[A-Za-z]+")


@dataclass(frozen=True)
class Rule:
    method: str  # upper-case, or "*"
    path: str  # the glob as configured
    pattern: re.Pattern[str]
    usd: Decimal  # fixed cost per call
    field: str | None
    factor_usd: Decimal  # USD per unit of `field`


class RulePricing:
    def __init__(self, vendor: str, rules: Sequence[Rule]) -> None:
        self._vendor = vendor
        self._rules = tuple(rules)

    @classmethod
    def from_config(cls, vendor: str, config: Mapping[str, Any]) -> RulePricing:
        where = f"vendors.{vendor}.rules"
        raw = config.get("rules", [])
        if not isinstance(raw, list):
            raise ValueError(f"{where}: expected a list of rules, got {type(raw).__name__}")
        return cls(vendor, [_rule(entry, f"{where}[{index}]") for index, entry in enumerate(raw)])

    def match(self, call: VendorCall) -> VendorEstimate | None:
        """The estimate of the first rule `call` matches; None when it matches none."""
        method, path = call.method.upper(), route_path(call.path)
        for rule in self._rules:
            if rule.method in ("*", method) and rule.pattern.fullmatch(path):
                return self._priced(call, rule)
        return None

    def _priced(self, call: VendorCall, rule: Rule) -> VendorEstimate:
        label = f"{self._vendor} {rule.method} {rule.path}"
        if rule.field is None:
            return VendorEstimate(exact_micros(rule.usd), call.body, None, f"{label}: ${rule.usd}")
        quantity = _quantity(_field_value(call, rule.field), rule.field)
        # One exact sum, rounded up once: the fixed part plus quantity x factor.
        cost = exact_micros(Fraction(rule.usd) + Fraction(quantity) * Fraction(rule.factor_usd))
        describe = f"{label}: {rule.field}={quantity} x ${rule.factor_usd}"
        if rule.usd:
            describe += f" + ${rule.usd}"
        return VendorEstimate(cost, call.body, None, describe)


def _field_value(call: VendorCall, field: str) -> Any:
    """`field` from a form body, or from a JSON body where `a.b` reaches into objects."""
    # With no Content-Type, a body that opens like JSON is read as JSON.
    kind = body_kind(call, "json" if call.body.lstrip()[:1] in (b"{", b"[") else "form")
    if kind == "form":
        return Fields("form", read_form(call)).get(field)
    value: Any = read_json(call)
    if isinstance(value, dict) and field in value:
        return value[field]  # a key that itself contains a dot
    for part in field.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _quantity(value: Any, field: str) -> Decimal:
    """A non-negative number from a JSON number or a decimal string; 400 otherwise."""
    if value is None:
        raise invalid_request(f"`{field}` is required: this call is priced by it.", field)
    number: Decimal | None = None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
        except InvalidOperation:
            number = None
    if number is None or not number.is_finite() or number < 0:
        raise invalid_request(f"`{field}` must be a number >= 0, got {value!r}.", field)
    if not in_range(number):
        raise invalid_request(f"`{field}` is out of range, got {value!r}.", field)
    return number


def _rule(entry: object, where: str) -> Rule:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(entry).__name__}")
    unknown = sorted(str(key) for key in entry if key not in _RULE_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown} (expected {sorted(_RULE_KEYS)})")
    method, path = entry.get("method"), entry.get("path")
    if not isinstance(method, str) or not _METHOD.fullmatch(method):
        raise ValueError(f"{where}.method: expected an HTTP method or '*', got {method!r}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"{where}.path: expected a path starting with '/', got {path!r}")
    field, factor = entry.get("field"), entry.get("factor_usd")
    if (field is None) != (factor is None):
        raise ValueError(f"{where}: `field` and `factor_usd` go together")
    if field is not None and (not isinstance(field, str) or not field.strip()):
        raise ValueError(f"{where}.field: expected a field name, got {field!r}")
    if field is None and entry.get("usd") is None:
        raise ValueError(f"{where}: give `usd` (a fixed cost per call) or `field` and `factor_usd`")
    return Rule(
        method=method.upper(),
        path=path,
        pattern=path_glob(path),
        usd=config_usd(entry.get("usd", 0), f"{where}.usd"),
        field=field,
        factor_usd=config_usd(factor if factor is not None else 0, f"{where}.factor_usd"),
    )
