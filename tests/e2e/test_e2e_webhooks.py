"""Webhooks through a real `outlay serve`: a burst of calls that crosses warn_at and then the
hard cap while the receiver is down and the gateway is restarted; once the receiver is back,
exactly one budget.warning and one budget.exceeded arrive, each verified with the
Standard Webhooks reference library."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from .harness import Launch, unique

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Receiver:
    """A webhook receiver on loopback that records what it was sent."""

    def __init__(self, port: int) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_events_survive_a_down_receiver_and_a_restart(launch: Launch, tmp_path: Path) -> None:
    state = tmp_path / "hooks.db"
    gateway = launch({}, state=state, name="hooks")
    port = free_port()  # nothing listens there yet: the receiver is down
    hook = gateway.admin.post("/admin/v1/webhooks", json={
        "url": f"http://127.0.0.1:{port}/hooks",
        "events": ["budget.warning", "budget.exceeded"]}).json()
    agent = unique("burst")
    gateway.set_policy(f"agent:{agent}", {"budgets": [
        {"usd": "0.0002", "period": "day", "mode": "hard", "warn_at": 0.8}]})
    key = gateway.mint_key(agent)["key"]
    statuses = []
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for _ in range(30):  # each call reserves 8 µ$ and costs 6 µ$: crosses both
            answer = client.post("/v1/chat/completions", headers={
                "Authorization": f"Bearer {key}"}, json={
                "model": "gpt-4o-mini", "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}]})
            statuses.append(answer.status_code)
    assert 200 in statuses
    assert 402 in statuses
    deadline = time.monotonic() + 10  # let the gateway fail against the down receiver
    while time.monotonic() < deadline and not any(
            d["attempt_log"] for d in gateway.admin.get(
                f"/admin/v1/webhooks/{hook['id']}/deliveries").json()["deliveries"]):
        time.sleep(0.1)
    gateway.stop()

    receiver = Receiver(port)
    try:
        restarted = launch({}, state=state, name="hooks-again")
        deadline = time.monotonic() + 30  # the first retry waits up to 10 s
        while time.monotonic() < deadline and len(receiver.received) < 2:
            time.sleep(0.1)
        time.sleep(1)  # nothing more may arrive
        verifier = Webhook(hook["secret"])
        events = [verifier.verify(body, headers) for headers, body in receiver.received]
        assert sorted(e["type"] for e in events) == ["budget.exceeded", "budget.warning"]
        for event in events:
            assert event["data"]["scope"] == f"agent:{agent}"
        deliveries = restarted.admin.get(f"/admin/v1/webhooks/{hook['id']}/deliveries").json()
        assert [d["state"] for d in deliveries["deliveries"]] == ["delivered", "delivered"]
        # at least one attempt failed while the receiver was down, before the restart
        assert any(len(d["attempt_log"]) >= 2 for d in deliveries["deliveries"])
        tampered = json.loads(receiver.received[0][1])
        tampered["data"]["spent_usd"] = "0"
        with pytest.raises(Exception, match=r"(?i)signature"):
            verifier.verify(json.dumps(tampered), receiver.received[0][0])
    finally:
        receiver.close()
