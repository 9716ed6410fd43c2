"""Every admin route needs the admin token; an agent key never opens one (SPEC §4)."""

from __future__ import annotations

import pytest
from aiohttp import web

from .harness import ADMIN_TOKEN, Admin

PREFIX = "/admin/v1/"
PUBLIC = {("GET", "/admin/v1/openapi.json")}


def admin_routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, path) of every registered admin route, path parameters filled in."""
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith(PREFIX) and route.method != "HEAD":
            filled = path.replace("{id}", "key_0000").replace("{scope}", "global")
            routes.add((route.method, filled))
    return sorted(routes - PUBLIC)


async def assert_unauthorised(admin: Admin, method: str, path: str,
                              headers: dict[str, str]) -> None:
    resp = await admin.client.request(method, path, headers=headers, json={})
    assert resp.status == 401, (method, path, await resp.text())
    body = await resp.json()
    assert body["error"]["code"] == "invalid_admin_token"
    assert body["error"]["type"] == "admin_error"


async def test_there_are_admin_routes_to_check(admin: Admin) -> None:
    routes = admin_routes(admin.app)
    assert ("POST", "/admin/v1/keys") in routes
    assert len(routes) >= 15


async def test_no_token(admin: Admin) -> None:
    for method, path in admin_routes(admin.app):
        await assert_unauthorised(admin, method, path, {})


async def test_wrong_token(admin: Admin) -> None:
    for method, path in admin_routes(admin.app):
        await assert_unauthorised(admin, method, path, {"Authorization": "Bearer not-it"})


async def test_agent_key_never_opens_an_admin_route(admin: Admin) -> None:
    minted = await admin.mint()
    secret = minted["key"]
    for method, path in admin_routes(admin.app):
        await assert_unauthorised(admin, method, path, {"Authorization": f"Bearer {secret}"})
        await assert_unauthorised(admin, method, path, {"x-api-key": secret})


@pytest.mark.parametrize("header", [
    f"Basic {ADMIN_TOKEN}", ADMIN_TOKEN, f"Bearer{ADMIN_TOKEN}", "Bearer ", f"Token {ADMIN_TOKEN}",
])
async def test_token_only_as_a_bearer(admin: Admin, header: str) -> None:
    await assert_unauthorised(admin, "GET", "/admin/v1/keys", {"Authorization": header})


async def test_admin_token_in_x_api_key_is_not_enough(admin: Admin) -> None:
    await assert_unauthorised(admin, "GET", "/admin/v1/keys", {"x-api-key": ADMIN_TOKEN})


async def test_the_admin_token_is_not_an_agent_key(admin: Admin) -> None:
    resp = await admin.chat(ADMIN_TOKEN)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "invalid_api_key"
    resp = await admin.client.get("/v1/models",
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert resp.status == 401


async def test_the_right_token_opens(admin: Admin) -> None:
    assert await admin.call("GET", "keys") == {"keys": []}


async def test_the_openapi_document_is_public(admin: Admin) -> None:
    resp = await admin.client.get("/admin/v1/openapi.json")
    assert resp.status == 200


async def test_unknown_admin_route_answers_json(admin: Admin) -> None:
    assert (await admin.call("GET", "nope", token=None, expect=401))["error"]["code"] == (
        "invalid_admin_token")  # nothing about which routes exist without the token
    error = await admin.refused("GET", "nope", status=404, code="not_found")
    assert "/admin/v1/nope" in error["message"]
    resp = await admin.client.delete("/admin/v1/keys",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"
    assert "GET" in resp.headers["Allow"]
