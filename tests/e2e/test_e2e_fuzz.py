"""Generated hostile input against a real `outlay serve`: thousands of request heads and bodies
on the LLM, vendor and admin routes, over raw sockets. None may answer 5xx or leave a
traceback in the log, and the money must add up afterwards: each agent's spent equals the sum
of its ledger rows, and nothing stays reserved once the gateway is idle."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import _launcher
from .harness import ADMIN_TOKEN, Gateway, micros

pytestmark = pytest.mark.e2e

AGENTS = ("fuzz-a", "fuzz-b")
ANSWER_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 20.0
# three runs of 1,700 examples: over 5,000 in all (fewer for a quick look while developing)
EXAMPLES = int(os.environ.get("OUTLAY_FUZZ_EXAMPLES", "1700"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# a model the simulated provider answers, priced so every allowed call reserves money
CONFIG: dict[str, Any] = {
    "max_body_bytes": 65_536,
    "simulated": {"latency_ms": 0},
    # thousands of wrong admin tokens from one address: unlimited, so the right token keeps
    # reaching the admin routes (the limit itself: tests/admin/test_admin_tokens.py)
    "server": {"admin_auth_failures": 0},
    "prices": {"fuzz-model": {"provider": "openai", "input": 1, "output": 2,
                              "max_output_tokens": 64, "context_window": 4096}},
}


class Fuzzed:
    def __init__(self, gateway: Gateway, keys: dict[str, str]) -> None:
        self.gateway, self.keys = gateway, keys


@pytest.fixture(scope="module")
def fuzzed(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    with _launcher(request.config, tmp_path_factory.mktemp("fuzz")) as start:
        gateway = start(CONFIG, workers=2, name="fuzz")
        keys = {}
        for agent in AGENTS:
            keys[agent] = gateway.mint_key(agent)["key"]
            gateway.set_policy(f"agent:{agent}", {
                "rpm": 100_000, "budgets": [{"usd": 1000, "period": "month", "mode": "hard"},
                                            {"usd": 0.5, "period": "day", "mode": "hard"}]})
        yield Fuzzed(gateway, keys)


# -- raw HTTP/1.1 ----------------------------------------------------------------------------

def exchange(port: int, head: bytes, body: bytes) -> tuple[int | None, bytes]:
    """Send one request on a fresh connection (Connection: close) and read the whole answer;
    (None, b"") when the server closed without answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT_S) as sock:
        sock.sendall(head + body)
        chunks = []
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65_536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
        else:
            pytest.fail(f"no end of answer in {ANSWER_TIMEOUT_S} s to {head[:200]!r}")
    answer = b"".join(chunks)
    if not answer.startswith(b"HTTP/1."):
        return None, answer
    return int(answer[9:12]), answer


def build_head(method: str, target: str, headers: list[tuple[bytes, bytes]],
               body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: 127.0.0.1",
             b"Connection: close", b"Content-Length: " + str(len(body)).encode()]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def check(fuzzed: Fuzzed, method: str, target: str, headers: list[tuple[bytes, bytes]],
          body: bytes) -> None:
    head = build_head(method, target, headers, body)
    status, answer = exchange(fuzzed.gateway.port, head, body)
    assert status is None or status < 500, (head, body[:300], answer[:600])
    if status is None:  # only a head the server could not read may be closed unanswered
        assert any(b"\x00" in v or v[:1].isspace() for _, v in headers), (head, answer[:300])


# -- what is generated -----------------------------------------------------------------------

# a header value: any bytes but the line ends that would end the head itself
header_bytes = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
text = st.text(max_size=40)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                        st.floats(allow_nan=False), text)
json_value = st.recursive(json_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)), max_leaves=20)
max_tokens = st.one_of(st.integers(-5, 10**12), st.floats(allow_nan=False), text, st.none())
models = st.one_of(st.sampled_from(["fuzz-model", "gpt-4o-mini", "claude-3-5-haiku-latest",
                                    "unknown-model", ""]), text, json_value)
message = st.fixed_dictionaries({"role": st.one_of(st.sampled_from(["user", "system"]), text),
                                 "content": st.one_of(text, json_value)})
chat = st.fixed_dictionaries(
    {"model": models, "messages": st.one_of(st.lists(message, max_size=3), json_value)},
    optional={"max_tokens": max_tokens, "max_completion_tokens": max_tokens,
              "stream": st.one_of(st.booleans(), json_scalar),
              "stream_options": json_value, "n": json_scalar, "tools": json_value,
              "service_tier": json_scalar, "input": json_value, "prompt": json_value,
              "max_output_tokens": max_tokens, "system": json_value})


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


bodies = st.one_of(chat.map(encode), json_value.map(encode), st.binary(max_size=300),
                   chat.map(encode).map(lambda b: b[: len(b) // 2]))
content_types = st.one_of(st.just(b"application/json"), header_bytes)


def credentials(fuzzed: Fuzzed) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    key = st.sampled_from(list(fuzzed.keys.values())).map(str.encode)
    value = st.one_of(key.map(lambda k: b"Bearer " + k), header_bytes,
                      st.tuples(key, header_bytes).map(lambda t: b"Bearer " + t[0] + t[1]))
    return st.one_of(st.tuples(st.just(b"Authorization"), value).map(lambda h: [h]),
                     st.tuples(st.just(b"x-api-key"), st.one_of(key, header_bytes)).map(
                         lambda h: [h]),
                     st.just([]))


def extras(names: list[bytes]) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    return st.lists(st.tuples(st.sampled_from(names), header_bytes), max_size=3)


# -- the runs --------------------------------------------------------------------------------

LLM_ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
              "/v1/messages", "/v1/messages/count_tokens"]


def test_llm_routes_survive_generated_input(fuzzed: Fuzzed) -> None:
    @FUZZ
    @given(route=st.sampled_from(LLM_ROUTES), auth=credentials(fuzzed), body=bodies,
           content_type=content_types,
           more=extras([b"X-Outlay-Approval", b"anthropic-version", b"anthropic-beta",
                        b"X-Outlay-Tags", b"OpenAI-Organization"]))
    def run(route: str, auth: list[tuple[bytes, bytes]], body: bytes, content_type: bytes,
            more: list[tuple[bytes, bytes]]) -> None:
        check(fuzzed, "POST", route, [*auth, (b"Content-Type", content_type), *more], body)

    run()
    assert_books_balance(fuzzed)


VENDOR_TARGETS = ["/vendors/stripe/v1/payment_intents", "/vendors/stripe/v1/charges",
                  "/vendors/stripe/v1/refunds", "/vendors/resend/emails",
                  "/vendors/resend/emails/batch",
                  "/vendors/twilio/2010-04-01/Accounts/AC00000000000000000000000000000000/"
                  "Messages.json", "/vendors/nowhere/v1/x"]
form_body = st.dictionaries(st.sampled_from(["amount", "currency", "To", "From", "Body",
                                             "confirm", "capture_method", "metadata[x]"]),
                            text, max_size=5).map(
    lambda d: "&".join(f"{quote(k)}={quote(v)}" for k, v in d.items()).encode())


def test_vendor_routes_survive_generated_input(fuzzed: Fuzzed) -> None:
    @FUZZ
    @given(target=st.sampled_from(VENDOR_TARGETS), method=st.sampled_from(["POST", "GET"]),
           auth=credentials(fuzzed), body=st.one_of(bodies, form_body),
           content_type=st.one_of(st.just(b"application/x-www-form-urlencoded"),
                                  content_types),
           more=extras([b"Idempotency-Key", b"Stripe-Account", b"X-Outlay-Approval"]))
    def run(target: str, method: str, auth: list[tuple[bytes, bytes]], body: bytes,
            content_type: bytes, more: list[tuple[bytes, bytes]]) -> None:
        check(fuzzed, method, target, [*auth, (b"Content-Type", content_type), *more], body)

    run()
    assert_books_balance(fuzzed)


ADMIN_PATHS = ["/admin/v1/keys", "/admin/v1/keys/{}", "/admin/v1/keys/{}/revoke",
               "/admin/v1/agents", "/admin/v1/policies/{}", "/admin/v1/usage/{}",
               "/admin/v1/audit?limit={}&scope={}", "/admin/v1/reports?group_by={}",
               "/admin/v1/approvals/{}/approve", "/admin/v1/webhooks", "/admin/v1/webhooks/{}",
               "/admin/v1/providers", "/admin/v1/prices"]
segment = st.one_of(text, st.sampled_from(["global", "agent:fuzz-target", "group:g", "key:x",
                                           "vendor:stripe", "0", "-1", "agent"]))


def admin_target(template: str, parts: list[str]) -> str:
    for part in parts:
        template = template.replace("{}", quote(part, safe=""), 1)
    return template.replace("{}", "x")


def test_admin_routes_survive_generated_input(fuzzed: Fuzzed) -> None:
    token = st.one_of(st.just(b"Bearer " + ADMIN_TOKEN.encode()), header_bytes,
                      st.just(b"Bearer " + fuzzed.keys[AGENTS[0]].encode()))

    @FUZZ
    @given(template=st.sampled_from(ADMIN_PATHS), parts=st.lists(segment, max_size=2),
           method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
           auth=token, body=st.one_of(bodies, json_value.map(encode)))
    def run(template: str, parts: list[str], method: str, auth: bytes, body: bytes) -> None:
        if method != "GET" and template.startswith("/admin/v1/keys/{}/revoke"):
            parts = ["key_not_a_fuzz_key"]  # never the fuzz agents' own keys
        check(fuzzed, method, admin_target(template, parts),
              [(b"Authorization", auth), (b"Content-Type", b"application/json")], body)

    run()
    assert_books_balance(fuzzed)


# -- the books -------------------------------------------------------------------------------

def assert_books_balance(fuzzed: Fuzzed) -> None:
    """Once idle: nothing reserved, each agent's month spent equals its ledger's sum, and the
    log holds no traceback."""
    gateway = fuzzed.gateway
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    while True:
        budgets = {agent: gateway.budget(f"agent:{agent}", "month") for agent in AGENTS}
        if all(micros(b["reserved_usd"]) == 0 for b in budgets.values()):
            break
        assert time.monotonic() < deadline, f"still reserved once idle: {budgets}"
        time.sleep(0.1)
    report = gateway.admin.get("/admin/v1/reports", params={"group_by": "agent"}).json()
    rows = {line["agent"]: line for line in report["rows"]}
    for agent, budget in budgets.items():
        ledger = Decimal(str(rows[agent]["cost_usd"])) if agent in rows else Decimal(0)
        assert micros(budget["spent_usd"]) == micros(ledger), (agent, budget, rows.get(agent))
    log = gateway.log()
    assert "Traceback" not in log, log[-4000:]
