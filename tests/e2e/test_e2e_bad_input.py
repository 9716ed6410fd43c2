"""Bad input through the real server: each refused clearly, recorded as invalid, never charged."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .harness import SHARED_CONFIG, Gateway, micros, unique

pytestmark = pytest.mark.e2e

MAX_BODY = SHARED_CONFIG["max_body_bytes"]
JSON = "application/json"
GOOD = b'{"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}'


def chunked(data: bytes, size: int = 4096) -> Iterator[bytes]:
    """A body without Content-Length, so the limit has to be enforced while reading."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


# (case, body, content type, status, code, words the message must contain)
CASES = [
    ("malformed JSON", b'{"model": "gpt-4o-mini", "messages": [', JSON, 400,
     "invalid_request", "not valid JSON"),
    ("missing model", b'{"messages": [{"role": "user", "content": "hi"}]}', JSON, 400,
     "invalid_request", "model"),
    ("wrong content type", GOOD, "text/plain", 400, "invalid_request", "Content-Type"),
    ("invalid UTF-8",
     b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff\xfe"}]}',
     JSON, 400, "invalid_request", "UTF-8"),
    ("JSON array", b'[{"model": "gpt-4o-mini"}]', JSON, 400, "invalid_request", "JSON object"),
    ("empty body", b"", JSON, 400, "invalid_request", "empty"),
    ("oversized", b'{"model": "gpt-4o-mini", "pad": "' + b"x" * MAX_BODY + b'"}', JSON, 413,
     "request_too_large", str(MAX_BODY)),
]


def test_bad_requests_are_refused_recorded_and_not_charged(gateway: Gateway) -> None:
    agent = unique("bad-input")
    minted = gateway.mint_key(agent)
    gateway.set_policy(f"agent:{agent}", {"budgets": [{"usd": 1, "period": "day"}]})
    headers = {"Authorization": f"Bearer {minted['key']}"}
    seen: list[tuple[str, int, str]] = []
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=15) as http:
        for case, body, content_type, status, code, words in CASES:
            answer = http.post("/v1/chat/completions", content=body,
                               headers={"Content-Type": content_type})
            assert answer.status_code == status, (case, answer.text)
            error = answer.json()["error"]
            assert error["code"] == code, case
            assert error["type"] == "invalid_request_error", case
            assert words in error["message"], (case, error["message"])
            seen.append((answer.headers["x-outlay-request-id"], status, code))

        # too large without a declared length: the limit holds while the body streams in
        answer = http.post("/v1/chat/completions", headers={"Content-Type": JSON},
                           content=chunked(CASES[-1][1]))
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "request_too_large"
        seen.append((answer.headers["x-outlay-request-id"], 413, "request_too_large"))

        budget = gateway.budget(f"agent:{agent}")
        assert micros(budget["spent_usd"]) == 0
        assert micros(budget["reserved_usd"]) == 0

        # and the gateway keeps serving the same agent
        ok = http.post("/v1/chat/completions", content=GOOD, headers={"Content-Type": JSON})
        assert ok.status_code == 200, ok.text

    entries = {e["request_id"]: e for e in gateway.audit(f"agent:{agent}")}
    for request_id, status, code in seen:
        entry = entries[request_id]
        assert (entry["decision"], entry["status"], entry["code"]) == ("invalid", status, code)
        assert micros(entry["cost_usd"]) == 0
        assert micros(entry["reserved_usd"]) == 0
        assert entry["key_id"] == minted["id"]
    allowed = [e for e in entries.values() if e["decision"] == "allowed"]
    assert len(allowed) == 1
    assert micros(gateway.budget(f"agent:{agent}")["spent_usd"]) == micros(allowed[0]["cost_usd"])


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/responses", "/v1/completions"])
def test_other_routes_refuse_a_body_without_its_required_field(
    gateway: Gateway, path: str
) -> None:
    minted = gateway.mint_key(unique("bad-route"))
    answer = httpx.post(f"{gateway.url}{path}", json={"model": "gpt-4o-mini"},
                        headers={"Authorization": f"Bearer {minted['key']}"}, timeout=15)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_request"
    (entry,) = gateway.audit(f"key:{minted['id']}")
    assert entry["decision"] == "invalid"
    assert micros(entry["cost_usd"]) == 0


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/vendors/stripe/v1/payment_intents"])
def test_an_approval_header_that_is_no_approval_id_is_refused_naming_it(
        gateway: Gateway, path: str) -> None:
    agent = unique("bad-approval")
    minted = gateway.mint_key(agent)
    gateway.set_policy(f"agent:{agent}", {"on_breach": "require_approval", "budgets": [
        {"usd": "0.000001", "period": "day"}]})
    headers = {"Authorization": f"Bearer {minted['key']}", "X-Outlay-Approval": "please-let-me"}
    with httpx.Client(base_url=gateway.url, headers=headers, timeout=15) as http:
        if path.startswith("/v1/"):
            answer = http.post(path, content=GOOD, headers={"Content-Type": JSON})
        else:
            answer = http.post(path, data={"amount": "2000", "currency": "usd"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", "X-Outlay-Approval")
    (row,) = gateway.audit(f"key:{minted['id']}")
    assert (row["decision"], row["reserved_usd"]) == ("invalid", "0")
    approvals = gateway.admin.get("/admin/v1/approvals").json()["approvals"]
    assert [a for a in approvals if a["agent"] == agent] == []  # nothing opened
