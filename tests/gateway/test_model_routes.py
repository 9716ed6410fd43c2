"""GET /v1/models/{id} on every provider, and GET /v1/models in Anthropic's shape (that
provider's models, paginated as Anthropic's API is) to a request carrying
`anthropic-version` or `x-api-key`."""

from __future__ import annotations

from typing import Any

import pytest

from outlay.gateway.models import display_name

from .fakes import Outlay, price_table

TABLE = price_table()
ANTHROPIC = sorted(n for n in TABLE.names() if (p := TABLE.resolve(n)) and
                   p.provider == "anthropic")


def anthropic_headers(secret: str) -> dict[str, str]:
    return {"x-api-key": secret, "anthropic-version": "2023-06-01"}


async def get(outlay: Outlay, path: str, headers: dict[str, str],
              **params: str) -> tuple[int, Any]:
    resp = await outlay.client.get(path, headers=headers, params=params)
    assert resp.headers["X-Outlay-Request-Id"].startswith("req_")
    return resp.status, await resp.json()


def test_display_names_read_as_anthropic_writes_them() -> None:
    assert display_name("claude-3-5-haiku") == "Claude 3.5 Haiku"
    assert display_name("claude-opus-4-1") == "Claude Opus 4.1"
    assert display_name("claude-sonnet-4") == "Claude Sonnet 4"
    assert display_name("claude-haiku-4-5-20251001") == "Claude Haiku 4.5 20251001"
    assert display_name("test-claude") == "Test Claude"


async def test_retrieve_answers_in_openai_shape(outlay: Outlay, key: dict[str, Any]) -> None:
    bearer = {"Authorization": f"Bearer {key['key']}"}
    status, body = await get(outlay, "/v1/models/test-gpt", bearer)
    assert (status, body) == (200, {"id": "test-gpt", "object": "model", "created": 0,
                                    "owned_by": "openai"})
    # any provider's model, as /v1/models lists them all to an OpenAI client
    status, body = await get(outlay, "/v1/models/test-claude", bearer)
    assert (status, body["owned_by"]) == (200, "anthropic")
    status, body = await get(outlay, "/v1/models/nobody-priced", bearer)
    assert status == 404
    assert (body["error"]["type"], body["error"]["code"], body["error"]["param"]) == (
        "invalid_request_error", "model_not_found", "model")


async def test_retrieve_hides_a_model_the_key_may_not_use(
        outlay: Outlay, key: dict[str, Any]) -> None:
    await outlay.set_policy("agent:agent-a", {"models": ["test-gpt"]})
    bearer = {"Authorization": f"Bearer {key['key']}"}
    assert (await get(outlay, "/v1/models/test-gpt", bearer))[0] == 200
    assert (await get(outlay, "/v1/models/test-free", bearer))[0] == 404
    status, body = await get(outlay, "/v1/models/test-claude",
                             anthropic_headers(key["key"]))
    assert status == 404
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"


async def test_retrieve_answers_in_anthropic_shape(outlay: Outlay, key: dict[str, Any]) -> None:
    status, body = await get(outlay, "/v1/models/test-claude", anthropic_headers(key["key"]))
    assert (status, body) == (200, {"type": "model", "id": "test-claude",
                                    "display_name": "Test Claude",
                                    "created_at": "1970-01-01T00:00:00Z"})
    # an Anthropic client sees Anthropic's models only
    status, body = await get(outlay, "/v1/models/test-gpt", anthropic_headers(key["key"]))
    assert status == 404
    assert body["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("header", ["x-api-key", "anthropic-version"])
async def test_the_list_answers_anthropic_clients_in_their_shape(
        outlay: Outlay, key: dict[str, Any], header: str) -> None:
    headers = {"x-api-key": key["key"]} if header == "x-api-key" else {
        "Authorization": f"Bearer {key['key']}", "anthropic-version": "2023-06-01"}
    status, body = await get(outlay, "/v1/models", headers)
    assert status == 200
    assert set(body) == {"data", "has_more", "first_id", "last_id"}
    first = ANTHROPIC[:20]  # Anthropic's default page
    assert [m["id"] for m in body["data"]] == first
    assert all(set(m) == {"type", "id", "display_name", "created_at"} for m in body["data"])
    assert {m["type"] for m in body["data"]} == {"model"}
    assert (body["has_more"], body["first_id"], body["last_id"]) == (
        len(ANTHROPIC) > 20, first[0], first[-1])
    status, whole = await get(outlay, "/v1/models", headers, limit="1000")
    assert status == 200
    assert [m["id"] for m in whole["data"]] == ANTHROPIC
    assert (whole["has_more"], whole["last_id"]) == (False, ANTHROPIC[-1])


async def test_the_anthropic_list_pages_as_anthropics_does(
        outlay: Outlay, key: dict[str, Any]) -> None:
    assert len(ANTHROPIC) >= 5
    headers = anthropic_headers(key["key"])
    seen: list[str] = []
    after: dict[str, str] = {}
    for _ in range(len(ANTHROPIC)):  # bounded: one model a page at worst
        status, page = await get(outlay, "/v1/models", headers, limit="2", **after)
        assert status == 200
        ids = [m["id"] for m in page["data"]]
        assert len(ids) <= 2
        assert (page["first_id"], page["last_id"]) == (ids[0], ids[-1])
        seen += ids
        if not page["has_more"]:
            break
        after = {"after_id": page["last_id"]}
    assert seen == ANTHROPIC
    # before_id: the page just before a model
    status, page = await get(outlay, "/v1/models", headers, limit="2",
                             before_id=ANTHROPIC[3])
    assert [m["id"] for m in page["data"]] == ANTHROPIC[1:3]
    assert page["has_more"] is True
    status, page = await get(outlay, "/v1/models", headers, before_id=ANTHROPIC[1])
    assert ([m["id"] for m in page["data"]], page["has_more"]) == ([ANTHROPIC[0]], False)
    status, page = await get(outlay, "/v1/models", headers, after_id=ANTHROPIC[-1])
    assert page == {"data": [], "has_more": False, "first_id": None, "last_id": None}


@pytest.mark.parametrize(("params", "status", "field"), [
    ({"limit": "0"}, 400, "limit"),
    ({"limit": "1001"}, 400, "limit"),
    ({"limit": "two"}, 400, "limit"),
    ({"limit": "٣"}, 400, "limit"),
    ({"after_id": "test-claude", "before_id": "test-claude"}, 400, "before_id"),
    ({"after_id": "nobody"}, 404, "after_id"),
    ({"before_id": "test-gpt"}, 404, "before_id"),  # not Anthropic's: not in the list
])
async def test_bad_page_parameters_are_refused_naming_the_field(
        outlay: Outlay, key: dict[str, Any], params: dict[str, str], status: int,
        field: str) -> None:
    got, body = await get(outlay, "/v1/models", anthropic_headers(key["key"]), **params)
    assert got == status
    assert body["type"] == "error"
    assert body["error"]["type"] == (
        "not_found_error" if status == 404 else "invalid_request_error")
    assert field in body["error"]["message"] or body["error"].get("param") == field


async def test_refusals_answer_in_the_clients_shape(outlay: Outlay) -> None:
    status, body = await get(outlay, "/v1/models/test-claude", anthropic_headers("olk_nope"))
    assert status == 401
    assert body["type"] == "error"
    status, body = await get(outlay, "/v1/models/test-gpt",
                             {"Authorization": "Bearer olk_nope"})
    assert status == 401
    assert "error" in body
    assert "type" not in body
