"""The headers sent upstream, with each endpoint's credential headers planned once, against
the per-call assembly they replaced: the same pairs in the same order."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given
from hypothesis import strategies as st

from outlay.upstream.http import (
    _REQUEST_DROPPED,
    ANTHROPIC_VERSION,
    Endpoint,
    _auth_plan,
    _outbound_headers,
)


def _reference(provider: str, endpoint: Endpoint, incoming: Mapping[str, str]
               ) -> list[tuple[str, str]]:
    replaced = {name.lower() for name, _ in endpoint.auth_headers}
    headers = [(name, value) for name, value in incoming.items()
               if (low := name.lower()) not in _REQUEST_DROPPED and low not in replaced]
    ours = [("Accept-Encoding", "identity")]
    style = endpoint.style or ("anthropic" if provider == "anthropic" else "openai")
    if style == "anthropic":
        if endpoint.api_key is not None:
            ours.append(("x-api-key", endpoint.api_key))
        if not any(name.lower() == "anthropic-version" for name, _ in headers):
            ours.append(("anthropic-version", ANTHROPIC_VERSION))
    elif style == "azure":
        if endpoint.api_key is not None:
            ours.append(("api-key", endpoint.api_key))
    elif endpoint.api_key is not None:
        ours.append(("Authorization", f"Bearer {endpoint.api_key}"))
    headers += [(name, value) for name, value in ours if name.lower() not in replaced]
    headers += endpoint.auth_headers
    return headers


_NAMES = ["Content-Type", "accept", "Anthropic-Version", "anthropic-beta", "Authorization",
          "x-api-key", "api-key", "Accept-Encoding", "Host", "x-custom", "idempotency-key"]
_endpoints = st.builds(
    Endpoint, base_url=st.just("https://api.example.com/v1"),
    api_key=st.one_of(st.none(), st.just("sk-1")),
    auth_headers=st.lists(st.tuples(st.sampled_from(_NAMES), st.just("secret")),
                          max_size=3).map(tuple),
    style=st.sampled_from([None, "openai", "anthropic", "azure"]))


@given(st.sampled_from(["openai", "anthropic", "groq"]), _endpoints,
       st.dictionaries(st.sampled_from(_NAMES), st.sampled_from(["a", "2023-06-01"])))
def test_outbound_headers_are_those_assembled_per_call(
        provider: str, endpoint: Endpoint, incoming: dict[str, str]) -> None:
    assert _outbound_headers(_auth_plan(provider, endpoint), incoming) == \
        _reference(provider, endpoint, incoming)
