"""Which headers cross the gateway, each way."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from multidict import CIMultiDict, MultiDict, MultiMapping

# Only these request headers reach a provider: the agent's own credential never does.
_FORWARD = ("content-type", "accept", "user-agent", "anthropic-version", "anthropic-beta",
            "openai-beta", "idempotency-key")
# Response headers the gateway sets itself, or that describe the upstream connection.
_DROP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
         "proxy-connection", "upgrade", "trailer", "te", "server", "date"}
_OURS_PREFIXES = ("x-ratelimit-", "ratelimit")


def request_headers(incoming: Mapping[str, str]) -> dict[str, str]:
    return {name: incoming[name] for name in _FORWARD if name in incoming}


def response_headers(upstream: Mapping[str, str], ours: Mapping[str, str]) -> MultiMapping[str]:
    """Upstream's headers, minus hop-by-hop ones; ours win, and replace the provider's
    rate-limit headers when the gateway has limits of its own."""
    own, replace_limits, distinct = _names_of(tuple(ours))
    pairs = [(name, value) for name, value in upstream.items()
             if (low := name.lower()) not in _DROP and low not in own
             and not (replace_limits and low.startswith(_OURS_PREFIXES))]
    if distinct:  # none of ours is upstream's, nor two the same: each is one more header
        pairs += ours.items()
        # case-sensitive: nothing looks a name up in the answer's headers, and a
        # CIMultiDict makes a case-folded copy of each name (half of this function's cost)
        return MultiDict(pairs)
    out: CIMultiDict[str] = CIMultiDict(pairs)
    for name, value in ours.items():
        out[name] = value
    return out


@functools.lru_cache(maxsize=256)  # the names of ours: a few sets, the same on most calls
def _names_of(ours: tuple[str, ...]) -> tuple[frozenset[str], bool, bool]:
    """Our header names in lower case; whether they replace the provider's rate-limit
    headers; whether no two of them are the same header."""
    own = frozenset(name.lower() for name in ours)
    return own, any(name.startswith(_OURS_PREFIXES) for name in own), len(own) == len(ours)
