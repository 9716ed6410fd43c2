"""GET /v1/models lists what the key may use; /healthz and /readyz report on the worker."""

from __future__ import annotations

from typing import Any

from outlay.pricing.table import ModelPrice

from .fakes import Outlay, error_of, price_table

TABLE = price_table()


def price(name: str) -> ModelPrice:
    found = TABLE.resolve(name)
    assert found is not None, name
    return found


async def model_ids(outlay: Outlay, secret: str) -> list[str]:
    resp = await outlay.client.get("/v1/models", headers={"Authorization": f"Bearer {secret}"})
    assert resp.status == 200
    assert resp.headers["X-Outlay-Request-Id"].startswith("req_")
    body = await resp.json()
    assert body["object"] == "list"
    for entry in body["data"]:
        assert entry["object"] == "model"
        assert entry["owned_by"] == price(entry["id"]).provider
    return [entry["id"] for entry in body["data"]]


async def test_all_priced_models_without_a_policy(outlay: Outlay, key: dict[str, Any]) -> None:
    # the models of the providers the gateway has: not groq's and others' without a section
    assert await model_ids(outlay, key["key"]) == [
        n for n in TABLE.names() if price(n).provider in ("openai", "anthropic")]
    assert any(price(n).provider == "groq" for n in TABLE.names())


async def test_allow_list_filters(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"models": ["test-*", "gpt-4o-mini"]})
    assert await model_ids(outlay, key["key"]) == [
        "gpt-4o-mini", "test-claude", "test-free", "test-gpt"]


async def test_every_scope_narrows(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"models": ["test-*"]})
    await outlay.set_policy(f"key:{key['id']}", {"models": ["test-gpt", "test-claude"]})
    assert await model_ids(outlay, key["key"]) == ["test-claude", "test-gpt"]


async def test_free_models_only(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("global", {"free_models_only": True})
    free = [n for n in TABLE.names() if price(n).free]
    assert "test-free" in free
    assert await model_ids(outlay, key["key"]) == free


async def test_vendor_allow_list_filters(outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy(f"key:{key['id']}", {"vendors": ["anthropic"]})
    ids = await model_ids(outlay, key["key"])
    assert "test-claude" in ids
    assert all(price(n).provider == "anthropic" for n in ids)


async def test_a_vendor_policy_applies_to_its_own_models(outlay: Outlay,
                                                         key: dict[str, Any]) -> None:
    await outlay.set_policy("vendor:anthropic", {"models": ["test-claude"]})
    ids = await model_ids(outlay, key["key"])
    assert "test-claude" in ids
    assert "test-gpt" in ids
    assert [n for n in ids if price(n).provider == "anthropic"] == ["test-claude"]


async def test_models_needs_a_valid_key(outlay: Outlay, key: dict[str, Any]) -> None:
    resp = await outlay.client.get("/v1/models")
    assert resp.status == 401
    assert resp.headers["X-Outlay-Request-Id"].startswith("req_")
    assert error_of(await resp.json(), "openai")["code"] == "invalid_api_key"
    await outlay.admin("POST", f"keys/{key['id']}/revoke")
    resp = await outlay.client.get("/v1/models", headers={"x-api-key": key["key"]})
    assert resp.status == 401  # an x-api-key is Anthropic's: so is the answer's shape
    assert error_of(await resp.json(), "anthropic")["code"] == "key_revoked"
    resp = await outlay.client.get("/v1/models", headers={"Authorization": f"Bearer {key['key']}"})
    assert resp.status == 401
    assert error_of(await resp.json(), "openai")["code"] == "key_revoked"


async def test_healthz(outlay: Outlay) -> None:
    resp = await outlay.client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz(outlay: Outlay) -> None:
    resp = await outlay.client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ready"}


async def test_readyz_without_the_state_store(outlay: Outlay) -> None:
    await outlay.store.close()
    resp = await outlay.client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["status"] == "unavailable"
    assert (await outlay.client.get("/healthz")).status == 200  # the process itself lives
