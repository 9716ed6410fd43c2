"""Admin access control through real `outlay serve` processes: a scoped operator through the
CLI (mints for its group, refused for another), the admin audit's before and after of a
policy change on SQLite and on Redis + PostgreSQL, a revoked admin token refused by the other
replica at once, and webhook secrets sealed at rest with a secret key (absent in clear from
the SQLite file and the PostgreSQL rows) while deliveries still verify with the Standard
Webhooks library, before and after `outlay rotate-secret-key`."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from .harness import ADMIN_TOKEN, Gateway, Launch, outlay_bin, server_env, unique
from .replicas import Replicas
from .test_e2e_webhooks import Receiver, free_port

pytestmark = pytest.mark.e2e

KEY, NEW_KEY = "e2e-secret-key-0123456789", "e2e-rotated-key-0123456789"
WAIT_S = 20.0


def outlay(url: str, token: str, *args: str, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
    env = server_env()
    del env["OUTLAY_ADMIN_TOKEN"]
    done = subprocess.run([outlay_bin(), *args, "--url", url, "--token", token],
                          capture_output=True, text=True, env=env, timeout=30, check=False)
    if check:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def call(url: str, token: str, method: str, path: str, body: Any = None,
         status: int = 200) -> Any:
    answer = httpx.request(method, f"{url}/admin/v1/{path}", json=body, timeout=15,
                           headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == status, (method, path, answer.text)
    return answer.json()


def policy_audit(url: str, group: str) -> list[tuple[Any, Any, str]]:
    entries = call(url, ADMIN_TOKEN, "GET", f"admin-audit?target=policy:group:{group}"
                   )["entries"]
    return [(None if e["before"] is None else e["before"]["rpm"],
             None if e["after"] is None else e["after"]["rpm"], e["token_name"])
            for e in entries]


def verified_test_event(receiver: Receiver, url: str, hook: dict[str, Any],
                        secret: str) -> None:
    """Send `webhooks test` and check what arrives with the reference verifier."""
    before = len(receiver.received)
    call(url, ADMIN_TOKEN, "POST", f"webhooks/{hook['id']}/test", {}, status=202)
    deadline = time.monotonic() + WAIT_S
    while len(receiver.received) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(receiver.received) > before, "the test event never arrived"
    headers, body = receiver.received[-1]
    event = Webhook(secret).verify(body, headers)
    assert event["type"] == "webhook.test"


def no_secret_in(stored: bytes, secret: str) -> None:
    assert secret.encode() not in stored
    assert secret.removeprefix("whsec_").encode() not in stored


def sqlite_bytes(state: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(state.parent.glob(state.name + "*")))


def test_a_scoped_operator_through_the_cli_and_sealed_secrets_on_sqlite(
        launch: Launch, tmp_path: Path) -> None:
    state = tmp_path / "access.db"
    gateway = launch({"secret_key": KEY}, state=state, name="access")
    ours, theirs = unique("billing"), unique("research")
    for agent, group in ((f"{ours}-bot", ours), (f"{theirs}-bot", theirs)):
        call(gateway.url, ADMIN_TOKEN, "POST", "agents", {"name": agent, "group": group},
             status=201)
    made = json.loads(outlay(gateway.url, ADMIN_TOKEN, "admin-tokens", "create", "billing-lead",
                             "--role", "operator", "--scope", f"group:{ours}", "--json").stdout)
    lead = made["token"]
    minted = json.loads(outlay(gateway.url, lead, "keys", "create", "--agent", f"{ours}-bot",
                               "--json").stdout)
    assert minted["key"].startswith("olk_")
    refused = outlay(gateway.url, lead, "keys", "create", "--agent", f"{theirs}-bot",
                     check=False)
    assert refused.returncode == 1
    assert "HTTP 403 forbidden" in refused.stderr
    assert f"group:{ours}" in refused.stderr
    listed = outlay(gateway.url, lead, "keys", "list").stdout
    assert f"{ours}-bot" in listed
    assert f"{theirs}-bot" not in listed
    # the policy change the lead makes, before and after, in the admin audit
    outlay(gateway.url, lead, "policy", "set", f"group:{ours}", "--rpm", "10")
    outlay(gateway.url, lead, "policy", "set", f"group:{ours}", "--rpm", "20")
    assert policy_audit(gateway.url, ours) == [(10, 20, "billing-lead"),
                                               (None, 10, "billing-lead")]
    table = outlay(gateway.url, ADMIN_TOKEN, "admin-audit", "--target",
                   f"policy:group:{ours}").stdout
    assert "billing-lead" in table
    assert "PUT /admin/v1/policies/{scope}" in table
    call(gateway.url, lead, "GET", "admin-tokens", status=403)

    receiver = Receiver(free_port())
    try:
        hook = call(gateway.url, ADMIN_TOKEN, "POST", "webhooks",
                    {"url": f"http://127.0.0.1:{receiver.server.server_port}/hooks"},
                    status=201)
        verified_test_event(receiver, gateway.url, hook, hook["secret"])
        no_secret_in(sqlite_bytes(state), hook["secret"])
        gateway.stop()
        # a new key: the stored secrets re-sealed, then the gateway on the new key alone
        env = {**server_env(), "OUTLAY_SECRET_KEY": NEW_KEY, "OUTLAY_OLD_SECRET_KEYS": KEY}
        done = subprocess.run([outlay_bin(), "rotate-secret-key", "--state",
                               f"sqlite:///{state}"], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert "1 stored secret(s) now sealed" in done.stdout
        again = launch({"secret_key": NEW_KEY}, state=state, name="access-again")
        verified_test_event(receiver, again.url, hook, hook["secret"])
        no_secret_in(sqlite_bytes(state), hook["secret"])
    finally:
        receiver.close()


def test_replicas_share_tokens_audit_and_sealed_secrets(
        tmp_path: Path, redis_url: str, postgres_dsn: str) -> None:
    with Replicas(tmp_path, 2, state_url=redis_url, database=postgres_dsn,
                  config={"simulated": {"latency_ms": 0}, "secret_key": KEY}) as replicas:
        first, second = replicas[0].url, replicas[1].url
        group = unique("fleet")
        call(first, ADMIN_TOKEN, "POST", "agents", {"name": f"{group}-bot", "group": group},
             status=201)
        made = call(first, ADMIN_TOKEN, "POST", "admin-tokens",
                    {"name": "fleet-lead", "role": "operator", "scopes": [f"group:{group}"]},
                    status=201)
        lead = made["token"]
        call(second, lead, "PUT", f"policies/group:{group}", {"rpm": 10})
        call(second, lead, "PUT", f"policies/group:{group}", {"rpm": 20})
        assert policy_audit(first, group) == [(10, 20, "fleet-lead"),
                                              (None, 10, "fleet-lead")]
        call(second, lead, "POST", "keys", {"agent": f"{group}-bot"}, status=201)
        call(second, lead, "POST", "keys", {"agent": "elsewhere"}, status=403)
        # revoked through one replica: the other refuses the very next call
        call(first, ADMIN_TOKEN, "POST", f"admin-tokens/{made['id']}/revoke", {})
        refused = httpx.get(f"{second}/admin/v1/whoami", timeout=15,
                            headers={"Authorization": f"Bearer {lead}"})
        assert refused.status_code == 401

        receiver = Receiver(free_port())
        try:
            hook = call(first, ADMIN_TOKEN, "POST", "webhooks",
                        {"url": f"http://127.0.0.1:{receiver.server.server_port}/hooks"},
                        status=201)
            verified_test_event(receiver, second, hook, hook["secret"])
        finally:
            receiver.close()
        with psycopg.connect(postgres_dsn) as conn:
            rows = [repr(r).encode() for r in conn.execute("SELECT * FROM webhook_endpoints")]
        assert rows
        no_secret_in(b"\n".join(rows), hook["secret"])
        assert all(b"sealed:v1:" in row for row in rows)


def test_the_gateway_refuses_a_sealed_secret_without_its_key(launch: Launch,
                                                              tmp_path: Path) -> None:
    """A worker started without the key that sealed a secret cannot sign with it: the
    delivery waits (and says why in the log) instead of going out unsigned."""
    state = tmp_path / "keyless.db"
    gateway: Gateway = launch({"secret_key": KEY}, state=state, name="sealed")
    receiver = Receiver(free_port())
    try:
        hook = call(gateway.url, ADMIN_TOKEN, "POST", "webhooks",
                    {"url": f"http://127.0.0.1:{receiver.server.server_port}/hooks"},
                    status=201)
        gateway.stop()
        keyless = launch({}, state=state, name="keyless")
        call(keyless.url, ADMIN_TOKEN, "POST", f"webhooks/{hook['id']}/test", {}, status=202)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and "OUTLAY_SECRET_KEY" not in keyless.log():
            time.sleep(0.1)
        assert receiver.received == []
        assert "OUTLAY_SECRET_KEY" in keyless.log()
    finally:
        receiver.close()
