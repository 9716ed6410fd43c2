"""Admin access data in every state backend: admin tokens (hashed, with role and scopes)
that another instance of the store refuses as soon as one revokes them, an admin audit
trail that the database refuses to change, and webhook secrets sealed at rest with
OUTLAY_SECRET_KEY, opened for deliveries and re-sealed under a new key."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest

from outlay.state.access import AccessStore, AdminWrite
from outlay.state.base import NotFound, StateStore
from outlay.state.sealing import Sealer, SealError
from outlay.webhooks.outbox import WebhookStore

from .conftest import Backend, OpenStore, SqliteBackend
from .support import Clock

KEY, NEW_KEY = "first-secret-key-0123456789", "second-secret-key-0123456789"


def access(store: StateStore) -> AccessStore:
    assert isinstance(store, AccessStore)
    return store


def hooks(store: StateStore) -> WebhookStore:
    assert isinstance(store, WebhookStore)
    return store


async def test_admin_tokens_and_their_revocation_on_every_instance(
        open_store: OpenStore, clock: Clock, backend: Backend) -> None:
    one, other = access(await open_store(clock)), access(await open_store(clock))
    await one.init_admin_token("the-root-token")
    root = await other.admin_principal("the-root-token")
    assert root is not None
    assert (root.role, root.scopes, root.id) == ("admin", (), None)
    view, secret = await one.add_admin_token("billing-lead", "operator",
                                             ("group:billing-agents",))
    assert secret.startswith("oladm_")
    assert set(view) == {"id", "name", "role", "scopes", "created_at", "revoked_at"}
    seen = await other.admin_principal(secret)
    assert seen is not None
    assert (seen.id, seen.name, seen.role, seen.scopes) == (
        view["id"], "billing-lead", "operator", ("group:billing-agents",))
    assert [t["id"] for t in await other.list_admin_tokens()] == [view["id"]]
    assert secret.encode() not in backend.stored_bytes()  # only its hash is kept
    revoked = await one.revoke_admin_token(view["id"])
    assert revoked["revoked_at"] is not None
    assert await other.admin_principal(secret) is None  # no cache: refused at once
    assert await other.admin_principal("not-a-token") is None
    with pytest.raises(NotFound):
        await other.revoke_admin_token("adt_none")


def _write(target: str, agent: str | None, group: str | None, before: object,
           after: object) -> AdminWrite:
    return AdminWrite("adt_1", "lead", "PUT /admin/v1/policies/{scope}", target, agent, group,
                      before, after, 200)


async def test_the_admin_audit_newest_first_by_target_and_scope(
        store: StateStore, backend: Backend) -> None:
    trail = access(store)
    await trail.record_admin_write(_write("policy:group:a", None, "a", None, {"rpm": 1}))
    await trail.record_admin_write(_write("policy:group:a", None, "a", {"rpm": 1}, {"rpm": 2}))
    await trail.record_admin_write(_write("key:key_b", "bot", "b", {"name": None},
                                          {"name": "x"}))
    everything = await trail.admin_audit(None, 10)
    assert [e["target"] for e in everything] == ["key:key_b", "policy:group:a",
                                                 "policy:group:a"]
    newest = everything[1]
    assert (newest["before"], newest["after"], newest["token_name"], newest["token_id"]) == (
        {"rpm": 1}, {"rpm": 2}, "lead", "adt_1")
    assert newest["action"] == "PUT /admin/v1/policies/{scope}"
    assert len(await trail.admin_audit("policy:group:a", 1)) == 1
    assert [e["target"] for e in await trail.admin_audit(None, 10, ("agent:bot",))] == [
        "key:key_b"]
    assert [e["target"] for e in await trail.admin_audit(None, 10, ("group:a",))] == [
        "policy:group:a", "policy:group:a"]
    # the database itself refuses to change or drop a row of the trail
    for statement in ("UPDATE admin_audit SET after = NULL", "DELETE FROM admin_audit"):
        if isinstance(backend, SqliteBackend):
            with sqlite3.connect(backend.path) as conn, pytest.raises(sqlite3.DatabaseError):
                conn.execute(statement)
        else:
            with psycopg.connect(backend.database) as conn, pytest.raises(psycopg.Error):
                conn.execute(statement)
    assert len(await trail.admin_audit(None, 10)) == 3


async def test_webhook_secrets_are_sealed_at_rest_and_resealed(
        open_store: OpenStore, clock: Clock, backend: Backend) -> None:
    store = await open_store(clock, sealer=Sealer(KEY))
    added = await hooks(store).add_webhook("https://hooks.example.com/x", ["budget.warning"])
    rotated = await hooks(store).rotate_webhook_secret(added["id"], 3600)
    secrets = [added["secret"], rotated["secret"]]
    await hooks(store).emit("webhook.test", {"test": True}, endpoint_id=added["id"])
    stored = backend.stored_bytes()
    for secret in secrets:
        assert secret.encode() not in stored
        assert secret.removeprefix("whsec_").encode() not in stored
    assert b"sealed:v1:" in stored
    # a worker without the key cannot sign; one with it signs with both secrets
    keyless = await open_store(clock)
    with pytest.raises(SealError):
        await hooks(keyless).claim_deliveries(10, 30_000)
    clock.advance(31)
    jobs = await hooks(store).claim_deliveries(10, 30_000)
    assert [set(j.secrets) for j in jobs] == [set(secrets)]
    # re-sealed under a new key: the new key alone opens them, the old alone no longer does
    assert await access(store).reseal_secrets(Sealer(NEW_KEY, [KEY])) == 2
    clock.advance(31)
    renewed = await open_store(clock, sealer=Sealer(NEW_KEY))
    assert [set(j.secrets) for j in await hooks(renewed).claim_deliveries(10, 30_000)] == [
        set(secrets)]
    clock.advance(31)
    old = await open_store(clock, sealer=Sealer(KEY))
    with pytest.raises(SealError):
        await hooks(old).claim_deliveries(10, 30_000)


async def test_without_a_key_secrets_stay_in_clear_and_can_be_sealed_later(
        open_store: OpenStore, clock: Clock, backend: Backend) -> None:
    store = await open_store(clock)
    added = await hooks(store).add_webhook("https://hooks.example.com/x", ["budget.warning"])
    assert added["secret"].encode() in backend.stored_bytes()
    assert await access(store).reseal_secrets(Sealer(KEY)) == 1
    assert added["secret"].encode() not in backend.stored_bytes()
