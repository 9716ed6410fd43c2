"""The header values a client sends that Outlay stores or compares, checked at the edge.

aiohttp hands on a header byte that is not UTF-8 as a lone surrogate (`\\udcff`); such a value,
or a control character, must never reach a hash, a store statement or the ledger: it would
raise there, inside a transaction other agents' calls share. So each such value is checked
here, before anything else looks at it: printable ASCII (0x20-0x7E) within a length limit.
A bad credential is no credential (401); a bad `X-Outlay-Approval` or `Idempotency-Key` is a
400 `invalid_request` naming the header. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from outlay.policy.errors import BadRequest, invalid_request

APPROVAL = "X-Outlay-Approval"
IDEMPOTENCY_KEY = "Idempotency-Key"
# The longest Idempotency-Key any built-in vendor takes (Resend: 256; Stripe's 255 is
# checked by its own pricing). The edge only keeps what is no key at all from the store.
IDEMPOTENCY_KEY_MAX = 256
# An Outlay key is 47 characters and an admin token an operator sets has no fixed length;
# a credential longer than this matches nothing, so it is not even hashed.
CREDENTIAL_MAX = 1024
# What state.announcements.new_approval_id makes: `apr_` and 16 hex digits.
APPROVAL_ID = re.compile(r"apr_[0-9a-f]{16}")


def printable_ascii(value: str, limit: int) -> bool:
    """Whether `value` is at most `limit` characters, each in 0x20-0x7E."""
    # isascii() refuses surrogates and anything past 0x7F; for ASCII, isprintable() refuses
    # exactly the control characters 0x00-0x1F and 0x7F
    return len(value) <= limit and value.isascii() and value.isprintable()


def credential(value: str) -> str | None:
    """`value` as a credential to look up, or None when it cannot be one."""
    return value if printable_ascii(value, CREDENTIAL_MAX) else None


def approval_id(headers: Mapping[str, str]) -> str | None:
    """The approval an agent presents with `X-Outlay-Approval`; None when absent or empty."""
    value = headers.get(APPROVAL)
    if not value:
        return None
    if not APPROVAL_ID.fullmatch(value):
        raise _bad(APPROVAL, "must be an approval id as an approval_required error gives it "
                   "(apr_ and 16 hex digits)")
    return value


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    """The `Idempotency-Key` of a vendor call, checked; None when absent or empty."""
    value = headers.get(IDEMPOTENCY_KEY)
    if not value:
        return None
    if not printable_ascii(value, IDEMPOTENCY_KEY_MAX):
        raise _bad(IDEMPOTENCY_KEY, f"must be at most {IDEMPOTENCY_KEY_MAX} printable ASCII "
                   "characters")
    return value


def _bad(name: str, rule: str) -> BadRequest:
    # the value itself is not echoed: it may be any bytes, of any length
    return invalid_request(f"The `{name}` header {rule}.", name)
