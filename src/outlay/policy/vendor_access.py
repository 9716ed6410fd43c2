"""What a scope may do on a vendor's API (least privilege): the operations it may call, the
connected accounts it may act on and the destinations it may reach. Pure: parsed from a
policy's fields, and checked against a call by `decide` before anything is reserved.

    operations:   {stripe: ["POST /v1/payment_intents", "GET /v1/**"]}
    accounts:     {stripe: ["acct_1Nabc"]}
    destinations: {twilio: ["US", "CA"], resend: ["*@example.com"]}

An operation is an HTTP method (or `*`) and a path glob, the syntax of a vendor's `rules`:
`*` matches within one segment and `**` across segments, matched case-insensitively against
the path the vendor will act on (%-escapes decoded, dot segments resolved).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from fnmatch import fnmatchcase
from functools import lru_cache
from urllib.parse import unquote

from outlay.policy.errors import NotAllowed

# (vendor, its entries) pairs, in the order given: hashable, like the rest of a Policy
VendorLists = tuple[tuple[str, tuple[str, ...]], ...]

_METHOD = re.compile(r"\*|[A-Za-z]+")
ACCESS_FIELDS = ("operations", "accounts", "destinations")


class AccessError(ValueError):
    """A list that cannot be accepted; `field` names where (e.g. `operations.stripe[0]`)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def route_path(path: str) -> str:
    """The path a vendor will act on: query dropped, %-escapes decoded, dot segments resolved.

    Classifying the decoded, normalised path means `/v1/payment%5Fintents` or
    `/v1/x/../payment_intents` cannot pass for another route than the one the vendor acts
    on. Case is kept; matchers compare case-insensitively for the same reason.
    """
    path = path.split("?", 1)[0].split("#", 1)[0]
    segments: list[str] = []
    for segment in unquote(path).split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def path_glob(path: str) -> re.Pattern[str]:
    """A path pattern: `*` within a segment, `**` across segments, matched against the
    normalised call path (route_path)."""
    parts = re.split(r"(\*\*|\*)", route_path(path))
    regex = "".join(
        "[^/]*" if part == "*" else ".*" if part == "**" else re.escape(part) for part in parts
    )
    # Case-insensitive: a rule that matches more calls can only reserve more, never less.
    # DOTALL: a decoded path may hold a newline, and `**` must cross it too.
    return re.compile(regex, re.IGNORECASE | re.DOTALL)


@lru_cache(maxsize=4096)
def operation(text: str) -> tuple[str, re.Pattern[str]]:
    """`"POST /v1/payment_intents/*/confirm"` as (method, path pattern); ValueError if it
    is not one."""
    method, _, path = text.strip().partition(" ")
    path = path.strip()
    if not _METHOD.fullmatch(method) or not path:
        raise ValueError(f"{text!r} must be a method and a path glob, such as "
                         "'POST /v1/payment_intents' or '* /v1/**'")
    if not path.startswith("/") or any(not c.isprintable() or c.isspace() for c in path):
        raise ValueError(f"{text!r}: the path glob must start with '/' and hold no spaces or "
                         "control characters")
    if "***" in path:
        raise ValueError(f"{text!r}: the path glob cannot compile: use '*' within a segment "
                         "and '**' across segments")
    return method.upper(), path_glob(path)


def parse_lists(name: str, raw: object, vendors: Collection[str] | None) -> VendorLists | None:
    """`operations`, `accounts` or `destinations`: a mapping of vendor to a list of
    non-empty strings; `vendors`, when given, the vendor names the gateway knows."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise AccessError(f"{name} must be a mapping of vendor name to a list, such as "
                          f"{{stripe: [...]}}, got {raw!r}", name)
    out: list[tuple[str, tuple[str, ...]]] = []
    for vendor, entries in raw.items():
        where = f"{name}.{vendor}"
        if not isinstance(vendor, str) or not vendor:
            raise AccessError(f"{name}: vendor names must be non-empty strings", name)
        if vendors is not None and vendor not in vendors:
            raise AccessError(f"{where}: unknown vendor {vendor!r} (known: "
                              f"{', '.join(sorted(vendors))})", where)
        if not isinstance(entries, list):
            raise AccessError(f"{where} must be a list of strings, got {entries!r}", where)
        for index, entry in enumerate(entries):
            if not isinstance(entry, str) or not entry.strip():
                raise AccessError(f"{where}[{index}] must be a non-empty string, got "
                                  f"{entry!r}", f"{where}[{index}]")
            if name == "operations":
                try:
                    operation(entry)
                except ValueError as exc:
                    raise AccessError(f"{where}[{index}]: {exc}", f"{where}[{index}]") from None
        out.append((vendor, tuple(e.strip() for e in entries)))
    return tuple(out)


def listed(lists: VendorLists | None, vendor: str) -> tuple[str, ...] | None:
    """The entries `lists` gives `vendor`; None when it has no entry for it."""
    for name, entries in lists or ():
        if name == vendor:
            return entries
    return None


def lists_to_dict(lists: VendorLists) -> dict[str, list[str]]:
    return {vendor: list(entries) for vendor, entries in lists}


def operation_allowed(allowed: Sequence[str], method: str, path: str) -> bool:
    for entry in allowed:
        want, pattern = operation(entry)
        if want in ("*", method) and pattern.fullmatch(path):
            return True
    return False


def destination_allowed(allowed: Sequence[str], destination: str) -> bool:
    """Countries compare as written (upper-case), recipients by glob, both case-insensitive."""
    target = destination.lower()
    return any(fnmatchcase(target, pattern.lower()) for pattern in allowed)


def not_allowed_operation(vendor: str, method: str, path: str, allowed: Sequence[str],
                          scope: str) -> NotAllowed:
    return NotAllowed(
        "operation_not_allowed",
        f"{method} {_shown(path)} on {vendor} is not allowed for {scope}. Allowed "
        f"operations: {', '.join(allowed) or 'none'}.",
        vendor=vendor, method=method, path=_shown(path), allowed=list(allowed), scope=scope)


def not_allowed_account(vendor: str, account: str, allowed: Sequence[str] | None,
                        scope: str | None) -> NotAllowed:
    if allowed is None:
        why = (f"no policy lists {vendor} accounts, and the configuration does not say "
               f"`vendors.{vendor}.accounts: any`")
    else:
        why = f"{scope} may act on {', '.join(allowed) or 'no connected account'}"
    return NotAllowed(
        "account_not_allowed",
        f"The {vendor} account {_shown(account)!r} is not allowed: {why}.",
        vendor=vendor, account=_shown(account), allowed=None if allowed is None else list(allowed),
        scope=scope)


def not_allowed_destination(vendor: str, destination: str, allowed: Sequence[str],
                            scope: str) -> NotAllowed:
    return NotAllowed(
        "destination_not_allowed",
        f"The {vendor} destination {_shown(destination)!r} is not allowed for {scope}. "
        f"Allowed destinations: {', '.join(allowed) or 'none'}.",
        vendor=vendor, destination=_shown(destination), allowed=list(allowed), scope=scope)


def _shown(text: str) -> str:
    """`text` safe for a one-line message: a header or decoded path may hold anything."""
    text = "".join(char if char.isprintable() else "?" for char in text)
    return text if len(text) <= 200 else text[:200] + "…"
