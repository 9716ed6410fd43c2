"""The headers that cross the gateway: what reaches an agent of a provider's answer."""

from __future__ import annotations

from multidict import CIMultiDict

from outlay.gateway.forward import response_headers

UPSTREAM = CIMultiDict([("Server", "x"), ("Date", "d"), ("X-A", "up"), ("Set-Cookie", "a"),
                        ("set-cookie", "b"), ("x-ratelimit-limit-requests", "9"),
                        ("Content-Type", "application/json")])


def test_upstream_headers_keep_their_order_and_repeats_and_ours_follow() -> None:
    out = response_headers(UPSTREAM, {"X-Outlay-Request-Id": "r", "X-Outlay-Cost-USD": "1"})
    assert list(out.items()) == [
        ("X-A", "up"), ("Set-Cookie", "a"), ("set-cookie", "b"),
        ("x-ratelimit-limit-requests", "9"), ("Content-Type", "application/json"),
        ("X-Outlay-Request-Id", "r"), ("X-Outlay-Cost-USD", "1")]


def test_ours_replace_upstreams_of_the_same_name_in_any_case() -> None:
    out = response_headers(UPSTREAM, {"x-a": "ours", "content-type": "text/plain"})
    assert list(out.items()) == [
        ("Set-Cookie", "a"), ("set-cookie", "b"), ("x-ratelimit-limit-requests", "9"),
        ("x-a", "ours"), ("content-type", "text/plain")]


def test_our_limits_replace_every_rate_limit_header_of_the_provider() -> None:
    out = response_headers(UPSTREAM, {"X-RateLimit-Reset": "5"})
    assert "x-ratelimit-limit-requests" not in {name.lower() for name in out}
    assert list(out.items())[-1] == ("X-RateLimit-Reset", "5")


def test_two_of_ours_that_are_one_header_make_one_the_last_value() -> None:
    out = response_headers(UPSTREAM, {"X-B": "1", "x-b": "2", "X-C": "3"})
    assert list(out.items())[-2:] == [("x-b", "2"), ("X-C", "3")]
    assert sum(name.lower() == "x-b" for name in out) == 1
