"""`on_breach: require_approval` through the official openai SDK: a call held while a human
decides, passed when approved, refused when denied, and a later retry carrying
X-Outlay-Approval let through once."""

from __future__ import annotations

import threading
import time
from typing import Any

import openai
import pytest

from .harness import Gateway, unique

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "user", "content": "Pay the invoice."}]
# a budget of one micro-dollar: every call breaches it and needs a human
HELD = {"on_breach": "require_approval", "approval_wait_s": 10,
        "budgets": [{"usd": "0.000001", "period": "day", "mode": "hard"}]}


def pending_for(gateway: Gateway, agent: str, deadline_s: float = 8) -> dict[str, Any]:
    """The approval the held call opened, waited for (bounded)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        found = [a for a in gateway.admin.get("/admin/v1/approvals",
                                              params={"state": "pending"}).json()["approvals"]
                 if a["agent"] == agent]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no approval was opened for {agent}")


def held_call(gateway: Gateway, agent: str, key: str, outcome: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0,
                               timeout=20)
        try:
            outcome["completion"] = client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
        except openai.APIStatusError as exc:
            outcome["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_held_call_passes_once_a_human_approves(gateway: Gateway) -> None:
    agent = unique("approve")
    gateway.set_policy(f"agent:{agent}", HELD)
    key = gateway.mint_key(agent)["key"]
    outcome: dict[str, Any] = {}
    thread = held_call(gateway, agent, key, outcome)
    approval = pending_for(gateway, agent)
    assert thread.is_alive()  # held, not refused
    assert (approval["scope"], approval["code"]) == (f"agent:{agent}", "budget_exceeded")
    answer = gateway.admin.post(f"/admin/v1/approvals/{approval['id']}/approve",
                                json={"note": "ok once"})
    assert answer.status_code == 200, answer.text
    thread.join(15)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["completion"].choices[0].message.content
    entries = gateway.audit(f"agent:{agent}")
    assert [e["code"] for e in entries] == ["approved_overage", "approval_required"]
    assert gateway.admin.get(f"/admin/v1/approvals/{approval['id']}").json()["state"] == "used"


def test_a_denied_call_is_refused_with_its_approval_id(gateway: Gateway) -> None:
    agent = unique("deny")
    gateway.set_policy(f"agent:{agent}", HELD)
    key = gateway.mint_key(agent)["key"]
    outcome: dict[str, Any] = {}
    thread = held_call(gateway, agent, key, outcome)
    approval = pending_for(gateway, agent)
    gateway.admin.post(f"/admin/v1/approvals/{approval['id']}/deny", json={})
    thread.join(15)
    error = outcome["error"]
    assert isinstance(error, openai.PermissionDeniedError)
    body = error.body
    assert isinstance(body, dict)
    assert (body["code"], body["approval_id"], body["decision"]) == (
        "approval_required", approval["id"], "denied")


def test_a_retry_with_the_approval_header_goes_through_once(gateway: Gateway) -> None:
    agent = unique("later")
    gateway.set_policy(f"agent:{agent}", {**HELD, "approval_wait_s": 0})
    key = gateway.mint_key(agent)["key"]
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
    body = refused.value.body
    assert isinstance(body, dict)
    approval_id = body["approval_id"]
    gateway.admin.post(f"/admin/v1/approvals/{approval_id}/approve", json={})
    headers = {"X-Outlay-Approval": approval_id}
    passed = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                            max_tokens=20, extra_headers=headers)
    assert passed.choices
    with pytest.raises(openai.PermissionDeniedError):  # once, not twice
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20,
                                       extra_headers=headers)
