"""The OpenAPI paths of the approval and kill-switch routes (`approvals.py`)."""

from __future__ import annotations

from typing import Any

from outlay.policy.approvals import STATES


def approval_paths() -> dict[str, Any]:
    """The OpenAPI paths of this module."""
    one = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    name = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    obj = {"200": {"description": "OK",
                   "content": {"application/json": {"schema": {"type": "object"}}}}}
    note = {"content": {"application/json": {"schema": {
        "type": "object", "properties": {"note": {"type": "string"}}}}}}
    return {
        "/admin/v1/approvals": {"get": {
            "summary": "Approvals, newest first", "responses": obj, "parameters": [
                {"name": "state", "in": "query", "schema": {"enum": list(STATES)}}]}},
        "/admin/v1/approvals/{id}": {"get": {
            "summary": "Show an approval", "parameters": one, "responses": obj}},
        "/admin/v1/approvals/{id}/approve": {"post": {
            "summary": "Let the call it was opened for through once", "parameters": one,
            "requestBody": note, "responses": obj}},
        "/admin/v1/approvals/{id}/deny": {"post": {
            "summary": "Refuse the held call", "parameters": one, "requestBody": note,
            "responses": obj}},
        "/admin/v1/agents/{name}/revoke": {"post": {
            "summary": "Kill switch: revoke every key of an agent", "parameters": name,
            "responses": obj}},
        "/admin/v1/groups/{name}/revoke": {"post": {
            "summary": "Kill switch: revoke every key of a group's agents", "parameters": name,
            "responses": obj}},
    }
