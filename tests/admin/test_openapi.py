"""/admin/v1/openapi.json is an OpenAPI 3.1 document that lists exactly the admin routes the
application registers."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

import outlay

from .harness import Admin

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def registered(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/admin/v1/")
        and route.method != "HEAD"
    }


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in doc["paths"].items()
            for method in item if method in METHODS}


def refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


async def document(admin: Admin) -> dict[str, Any]:
    resp = await admin.client.get("/admin/v1/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_header(admin: Admin) -> None:
    doc = await document(admin)
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"]
    assert doc["info"]["version"] == outlay.__version__
    assert doc["components"]["securitySchemes"]["admin"] == {"type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"admin": []}]


async def test_every_registered_admin_route_is_documented_and_no_other(admin: Admin) -> None:
    doc = await document(admin)
    assert all(path.startswith("/admin/v1/") for path in doc["paths"])
    assert documented(doc) == registered(admin.app)


async def test_operations_are_complete(admin: Admin) -> None:
    doc = await document(admin)
    for path, item in doc["paths"].items():
        templated = set(re.findall(r"\{(\w+)\}", path))
        for method, op in item.items():
            if method not in METHODS:
                continue
            where = f"{method.upper()} {path}"
            assert op.get("summary"), where
            assert op["responses"], where
            for status, response in op["responses"].items():
                assert status == "default" or re.fullmatch(r"[1-5]\d\d", status), where
                assert response["description"], where
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == templated, where
            for param in op.get("parameters", []):
                assert param["in"] in ("path", "query", "header", "cookie"), where
                assert "schema" in param, where
                if param["in"] == "path":
                    assert param["required"] is True, where
            if method in ("get", "delete"):
                assert "requestBody" not in op, where


async def test_mint_is_documented_as_201(admin: Admin) -> None:
    doc = await document(admin)
    post = doc["paths"]["/admin/v1/keys"]["post"]
    assert "201" in post["responses"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["required"] == ["agent"]


async def test_every_ref_resolves(admin: Admin) -> None:
    doc = await document(admin)
    found = refs(doc)
    assert found
    for ref in found:
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert part in node, ref
            node = node[part]


async def test_policy_schema_knows_every_policy_field(admin: Admin) -> None:
    doc = await document(admin)
    fields = set(doc["components"]["schemas"]["Policy"]["properties"])
    assert {"rpm", "rph", "rpd", "tpm", "max_parallel", "budgets", "models",
            "free_models_only", "vendors", "on_breach"} <= fields


async def test_the_document_says_it_needs_no_token(admin: Admin) -> None:
    doc = await document(admin)
    assert doc["paths"]["/admin/v1/openapi.json"]["get"]["security"] == []
    secured = [op for path, item in doc["paths"].items() for m, op in item.items()
               if m in METHODS and path != "/admin/v1/openapi.json"]
    assert all("security" not in op for op in secured)  # the document-wide bearer applies
