"""Which of an agent's request headers reach a vendor, and which connected accounts a call
may name without a policy listing them (a vendor section's `accounts: any`).

A built-in vendor gets only the headers its API defines (a shipped list each), plus those
its configuration section adds with `forward_headers`; a configured vendor gets every header
but the ones never forwarded, unless its section gives `forward_headers`, which then lists
all it gets. Never forwarded to a real vendor: the agent's credential, hop-by-hop headers
(and those `Connection` names), `X-Forwarded-*`, `Forwarded`, `Via`, and Outlay's own
(`Outlay-*`, `X-Outlay-*`); the in-process simulator alone is sent `Outlay-Sim-Fault`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# what every HTTP API reads the same way
_COMMON = frozenset({"content-type", "accept", "accept-language", "user-agent"})
SHIPPED: Mapping[str, frozenset[str]] = {
    "stripe": _COMMON | {"idempotency-key", "stripe-version", "stripe-account",
                         "stripe-context", "x-stripe-client-user-agent"},
    "twilio": _COMMON | {"accept-charset", "i-twilio-idempotency-token",
                         "x-twilio-webhook-enabled"},
    "resend": _COMMON | {"idempotency-key", "x-batch-validation"},
}
# never sent on, whatever a configuration says
_NEVER = frozenset({
    "authorization", "x-api-key", "proxy-authorization", "cookie", "host", "content-length",
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
    "upgrade", "expect", "accept-encoding", "forwarded", "via", "x-real-ip",
})
_NEVER_PREFIXES = ("x-forwarded-", "outlay-", "x-outlay-")
SIM_FAULT = "outlay-sim-fault"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def never_forwarded(name: str) -> bool:
    lower = name.lower()
    return lower in _NEVER or lower.startswith(_NEVER_PREFIXES)


@dataclass(frozen=True)
class VendorHeaders:
    """What one vendor is sent of an agent's headers, and whether any account may be named."""

    allowed: frozenset[str] | None  # lower-case names; None: all but the never-forwarded
    simulated: bool = False  # calls go to the in-process simulator: Outlay-Sim-Fault passes
    any_account: bool = False

    def forwarded(self, headers: Mapping[str, str]) -> dict[str, str]:
        named = {part.strip().lower() for value in _values(headers, "connection")
                 for part in value.split(",")}  # hop-by-hop by the agent's own say
        out: dict[str, str] = {}
        for name, value in headers.items():
            lower = name.lower()
            if lower == SIM_FAULT and self.simulated:
                out[name] = value
            elif never_forwarded(lower) or lower in named:
                continue
            elif self.allowed is None or lower in self.allowed:
                out[name] = value
        return out


NO_RULE = VendorHeaders(None)  # a vendor the gateway has no section for: the never-list only


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    return [v for k, v in headers.items() if k.lower() == name]


def vendor_headers(vendors: Mapping[str, Mapping[str, Any]], builtin: tuple[str, ...],
                   credentialed: frozenset[str]) -> dict[str, VendorHeaders]:
    """Each vendor's rule, from its configuration section; ValueError naming the field for
    a section that cannot be used. `credentialed`: the vendors with credentials (the others
    built in are simulated)."""
    out: dict[str, VendorHeaders] = {}
    for name in dict.fromkeys((*builtin, *vendors)):
        section = vendors.get(name, {})
        where = f"vendors.{name}"
        extra = _header_list(section.get("forward_headers"), f"{where}.forward_headers")
        accounts = section.get("accounts")
        if accounts is not None and accounts != "any":
            raise ValueError(f"{where}.accounts: the only value is `any` (let calls name any "
                             f"connected account), got {accounts!r}; list the accounts a scope "
                             "may use in its policy's `accounts`")
        shipped = SHIPPED.get(name)
        if shipped is not None:
            allowed: frozenset[str] | None = shipped | (extra or frozenset())
        else:
            allowed = None if extra is None else _COMMON | extra
        out[name] = VendorHeaders(allowed, name in builtin and name not in credentialed,
                                  accounts == "any")
    return out


def _header_list(raw: object, where: str) -> frozenset[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ValueError(f"{where}: expected a list of header names, got {raw!r}")
    names = set()
    for index, name in enumerate(raw):
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValueError(f"{where}[{index}]: {name!r} is not a header name")
        if never_forwarded(name):
            raise ValueError(f"{where}[{index}]: {name} is never forwarded to a vendor "
                             "(a credential, hop-by-hop, X-Forwarded-*, Forwarded, or Outlay's "
                             "own)")
        names.add(name.lower())
    return frozenset(names)
