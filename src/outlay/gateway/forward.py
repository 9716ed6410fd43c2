"""Which headers cross the gateway, each way."""

from __future__ import annotations

from collections.abc import Mapping

from multidict import CIMultiDict

# Only these request headers reach a provider: the agent's own credential never does.
_FORWARD = ("content-type", "accept", "user-agent", "anthropic-version", "anthropic-beta",
            "openai-beta", "idempotency-key")
# Response headers the gateway sets itself, or that describe the upstream connection.
_DROP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
         "proxy-connection", "upgrade", "trailer", "te", "server", "date"}
_OURS_PREFIXES = ("x-ratelimit-", "ratelimit")


def request_headers(incoming: Mapping[str, str]) -> dict[str, str]:
    return {name: incoming[name] for name in _FORWARD if name in incoming}


def response_headers(upstream: Mapping[str, str], ours: Mapping[str, str]) -> CIMultiDict[str]:
    """Upstream's headers, minus hop-by-hop ones; ours win, and replace the provider's
    rate-limit headers when the gateway has limits of its own."""
    own = {k.lower() for k in ours}
    replace_limits = any(k.startswith(_OURS_PREFIXES) for k in own)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in upstream.items():
        low = name.lower()
        if low in _DROP or low in own:
            continue
        if replace_limits and low.startswith(_OURS_PREFIXES):
            continue
        out.add(name, value)
    for name, value in ours.items():
        out[name] = value
    return out
