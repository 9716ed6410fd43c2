"""The OpenAPI paths of admin tokens, the admin audit and `whoami` (`tokens.py`)."""

from __future__ import annotations

from typing import Any

from outlay.policy.admin_roles import ROLES


def access_paths() -> dict[str, Any]:
    """The OpenAPI paths of this module."""
    one = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    obj = {"200": {"description": "OK",
                   "content": {"application/json": {"schema": {"type": "object"}}}}}
    new = {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["name", "role"], "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "description": "names the token in the admin audit"},
            "role": {"enum": list(ROLES)},
            "scopes": {"type": "array", "items": {"type": "string",
                                                  "pattern": "^(group|agent):.+"},
                       "description": "the groups and agents it acts on; none: every fleet"},
        }}}}}
    made = {"201": {"description": "Made: `token` is shown only here",
                    "content": {"application/json": {"schema": {"type": "object"}}}}}
    return {
        "/admin/v1/admin-tokens": {
            "post": {"summary": "Make an admin token with a role and scopes (admin)",
                     "requestBody": new, "responses": made},
            "get": {"summary": "List admin tokens (admin)", "responses": obj}},
        "/admin/v1/admin-tokens/{id}/revoke": {"post": {
            "summary": "Revoke an admin token: refused by every replica from now (admin)",
            "parameters": one, "responses": obj}},
        "/admin/v1/admin-audit": {"get": {
            "summary": "Admin writes, newest first: token, time, target, before and after "
                       "(a scoped token sees its fleets' only)",
            "parameters": [
                {"name": "target", "in": "query", "schema": {"type": "string"},
                 "description": "key:<id>, agent:<name>, group:<name>, policy:<scope>, "
                                "approval:<id>, webhook:<id> or admin-token:<id>"},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
            "responses": obj}},
        "/admin/v1/whoami": {"get": {
            "summary": "The calling admin token: name, role and scopes", "responses": obj}},
    }
