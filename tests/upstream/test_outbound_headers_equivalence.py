"""The headers sent upstream, with each endpoint's credential headers planned once, and those
read from an answer, each name read once: against the per-call work they replaced, the same
pairs in the same order."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from outlay.upstream.http import (
    _DECODED,
    _HOP_BY_HOP_BYTES,
    _REQUEST_DROPPED,
    ANTHROPIC_VERSION,
    Endpoint,
    _auth_plan,
    _inbound_headers,
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


def _inbound_reference(raw: list[tuple[bytes, bytes]]) -> tuple[list[tuple[str, str]],
                                                                str | None]:
    pairs: list[tuple[str, str]] = []
    named_in_connection: list[str] = []
    codings: list[str] = []
    for name, value in raw:
        low = name.lower()
        if low in _HOP_BY_HOP_BYTES:
            if low == b"connection":
                named_in_connection += value.decode("latin-1").split(",")
            continue
        text = value.decode("utf-8", "surrogateescape")
        if low == b"content-encoding":
            codings.append(text.strip().lower())
        pairs.append((name.decode("latin-1"), text))
    headers: CIMultiDict[str] = CIMultiDict(pairs)
    for token in named_in_connection:
        headers.popall(token.strip(), None)
    coding = codings[0] if len(codings) == 1 and codings[0] in _DECODED else None
    if coding is not None or codings == ["identity"]:
        del headers["Content-Encoding"]
    return list(headers.items()), coding


_RAW_NAMES = [b"Content-Type", b"content-length", b"Connection", b"Keep-Alive",
              b"Content-Encoding", b"x-request-id", b"X-Trace", b"Transfer-Encoding", b"\xe9t\xe9"]
_RAW_VALUES = [b"gzip", b"identity", b"br", b"x-trace, keep-alive", b"close", b"caf\xc3\xa9",
               b"\xff\xfe", b"42"]


@given(st.lists(st.tuples(st.sampled_from(_RAW_NAMES), st.sampled_from(_RAW_VALUES)),
                max_size=8))
def test_inbound_headers_are_those_read_name_by_name(raw: list[tuple[bytes, bytes]]) -> None:
    headers, coding = _inbound_headers(raw)
    assert (list(headers.items()), coding) == _inbound_reference(raw)
