"""The gateway's own per-call work outside the store, in process, piece by piece, on the
bench's plain chat call (bench/nginx_mock.py): the estimate, the limit headers, the
settlement's pricing of the answer, the headers each way, the answer's head. Prints
microseconds per call of each piece; for figures the machine's noise does not move, count
instructions of one piece at two call counts:

    valgrind --tool=callgrind .venv/bin/python bench/path_cost.py estimate 300
    valgrind --tool=callgrind .venv/bin/python bench/path_cost.py estimate 900

(the difference of the two totals over 2 x 600 calls: warm-up and measure run as many).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import orjson
from nginx_mock import completion_body, request_body

from outlay.gateway.admission import new_request_id
from outlay.gateway.forward import request_headers, response_headers
from outlay.gateway.h1_exchange import Dates, H1Exchange
from outlay.gateway.h1_head import parse_head
from outlay.gateway.headers import limit_headers
from outlay.gateway.intake import agent_key, parse_json_object
from outlay.gateway.llm_routes import ROUTES
from outlay.gateway.settle import Settler
from outlay.policy.decision import Limits
from outlay.policy.money import micros_to_usd
from outlay.pricing.estimate import estimate
from outlay.pricing.table import load_table
from outlay.upstream import http as upstream_http
from outlay.upstream.http import Endpoint, _head, _inbound_headers

ROUTE = ROUTES["/v1/chat/completions"]
PRICE = load_table(None, None).resolve("gpt-4o-mini")
BODY_RAW = request_body().encode()
ANSWER = completion_body().encode()
NOW_MS = 1_765_000_000_000
LIMITS = Limits(requests_limit=1_000_000_000, requests_remaining=999_999_000,
                requests_reset_ms=NOW_MS + 12_345, requests_window="rpm",
                tokens_limit=1_000_000_000_000, tokens_remaining=999_999_000_000,
                tokens_reset_ms=NOW_MS + 12_345, budget_cap=1_000_000_000_000_000,
                budget_remaining=999_999_999_876_543, budget_scope="key:key_0123456789abcdef")
AGENT_HEAD = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
              b"Accept-Encoding: identity\r\nContent-Length: %d\r\n"
              b"Authorization: Bearer olk_0123456789abcdef0123456789abcdef\r\n"
              b"Content-Type: application/json\r\n\r\n" % len(BODY_RAW))
UPSTREAM_RAW = [(b"Server", b"nginx/1.22.1"), (b"Date", b"Sun, 06 Dec 2026 18:00:00 GMT"),
                (b"Content-Type", b"application/json"),
                (b"Content-Length", str(len(ANSWER)).encode()), (b"Connection", b"keep-alive")]
ENDPOINT = Endpoint("http://127.0.0.1:8081/v1", "sk-bench")
if hasattr(upstream_http, "_auth_plan"):  # this checkout's, made once per endpoint
    _PLAN = upstream_http._auth_plan("openai", ENDPOINT)

    def _outbound(headers: dict[str, str]) -> list[tuple[str, str]]:
        return upstream_http._outbound_headers(_PLAN, headers)  # type: ignore[arg-type]
else:  # the code before
    def _outbound(headers: dict[str, str]) -> list[tuple[str, str]]:
        return upstream_http._outbound_headers("openai", ENDPOINT, headers)  # type: ignore


def _estimate() -> None:
    estimate(ROUTE.kind, orjson.loads(BODY_RAW), PRICE)


def _limits() -> None:
    {"X-Outlay-Request-Id": "req_0123456789ab0123456789ab", **limit_headers(LIMITS, NOW_MS)}


EST = estimate(ROUTE.kind, orjson.loads(BODY_RAW), PRICE)
SETTLER = Settler(cast(Any, None), cast(Any, None), ROUTE, PRICE, EST, wait=False)
OURS = {"X-Outlay-Request-Id": "req_0123456789ab0123456789ab",
        **limit_headers(LIMITS, NOW_MS)}
UPSTREAM_HEADERS = _inbound_headers(UPSTREAM_RAW)[0]


def _settle() -> None:
    document = orjson.loads(ANSWER)
    outcome = SETTLER.answer(document, len(ANSWER))
    {**OURS, "X-Outlay-Cost-USD": micros_to_usd(outcome[1])}


def _intake() -> None:
    new_request_id()
    head = parse_head(bytearray(AGENT_HEAD), ROUTES, 4 * 1024 * 1024)
    agent_key(head.headers)  # type: ignore[union-attr]
    parse_json_object("application/json", BODY_RAW)


HEAD = parse_head(bytearray(AGENT_HEAD), ROUTES, 4 * 1024 * 1024)
CONN = SimpleNamespace(server=SimpleNamespace(dates=Dates()), lost=False,
                       may_keep=lambda: True, write=lambda data: None)


def _upstream() -> None:
    headers = request_headers(HEAD.headers)  # type: ignore[union-attr]
    _head("POST", "/v1/chat/completions", "127.0.0.1:8081",
          _outbound(headers), len(BODY_RAW))
    _inbound_headers(UPSTREAM_RAW)


def _answer() -> None:
    ex = H1Exchange(cast(Any, CONN), HEAD)  # type: ignore[arg-type]
    ex._head(200, response_headers(UPSTREAM_HEADERS, OURS), f"Content-Length: {len(ANSWER)}")


PIECES: dict[str, Callable[[], None]] = {
    "estimate": _estimate, "limits": _limits, "settle": _settle, "intake": _intake,
    "upstream": _upstream, "answer": _answer,
}


def main() -> None:
    names = [sys.argv[1]] if len(sys.argv) > 1 and sys.argv[1] != "all" else list(PIECES)
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    for name in names:
        piece = PIECES[name]
        for _ in range(calls):  # warm-up: caches, specialised bytecode
            piece()
        start = time.perf_counter()
        for _ in range(calls):
            piece()
        took = time.perf_counter() - start
        print(f"{name:10} {took / calls * 1e6:7.2f} µs per call")


if __name__ == "__main__":
    main()
