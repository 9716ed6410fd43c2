"""The OpenAPI 3.1 document of the admin API, served at /admin/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from outlay import __version__
from outlay.admin.access_openapi import access_paths
from outlay.admin.approvals_openapi import approval_paths
from outlay.admin.webhooks_openapi import webhook_paths

_USD = {"type": "string", "description": "USD, exact decimal", "examples": ["0.0125"]}
_BUDGET = {
    "type": "object", "required": ["usd"],
    "properties": {
        "usd": {"type": ["number", "string"]},
        "period": {"enum": ["hour", "day", "week", "month", "total"]},
        "mode": {"enum": ["hard", "soft"]},
        "warn_at": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "enforce": {"enum": ["enforce", "shadow"]},
        "on_exceeded": {"type": "object", "required": ["downgrade_to"], "properties": {
            "downgrade_to": {"oneOf": [{"type": "string"}, {
                "type": "array", "items": {"type": "string"}, "minItems": 1}]}}},
    },
}
_POLICY = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "rpm": {"type": "integer", "minimum": 0}, "rph": {"type": "integer", "minimum": 0},
        "rpd": {"type": "integer", "minimum": 0}, "tpm": {"type": "integer", "minimum": 0},
        "max_parallel": {"type": "integer", "minimum": 0},
        "budgets": {"type": "array", "items": {"$ref": "#/components/schemas/Budget"}},
        "models": {"type": "array", "items": {"type": "string"}},
        "free_models_only": {"type": "boolean"},
        "vendors": {"type": "array", "items": {"type": "string"}},
        "on_breach": {"enum": ["block", "alert", "require_approval"]},
        "approval_wait_s": {"type": "number", "minimum": 0},
        "clamp_max_tokens": {"oneOf": [{"type": "boolean"}, {"type": "integer", "minimum": 1}],
                             "description": "lower a call's maximum output (its own or the "
                             "model's) to fit the hard budgets, down to this many tokens "
                             "(unset or true: 256, or the call's own maximum when smaller); "
                             "false: refuse instead"},
        "hold_wait_ms": {"type": "integer", "minimum": 0, "maximum": 600_000,
                         "description": "how long a call that fits a hard budget's settled "
                         "spend, but not beside the calls in flight, waits for them to settle "
                         "(default 2000; 0: never)"},
        "required_tags": {"type": "array", "items": {"type": "string"},
                          "description": "labels every call must carry (400 missing_tag)"},
        "max_values": {"type": "integer", "minimum": 1,
                       "description": "tag:<name>=* only: values tracked per period "
                       "(default 100000)"},
        "enforce": {"enum": ["enforce", "shadow"]},
        "loop_guard": {
            "type": "object", "additionalProperties": False,
            "required": ["max_repeats", "window_s"],
            "properties": {"max_repeats": {"type": "integer", "minimum": 1, "maximum": 100_000},
                           "window_s": {"type": "integer", "minimum": 1, "maximum": 86_400}},
            "description": "the same request (key, route, body) admitted max_repeats times "
                           "within window_s is refused (429 loop_detected)"},
        "on_loop": {"enum": ["refuse", "revoke"],
                    "description": "what a loop does: refuse its calls (default) or revoke "
                                   "its key"},
        "on_rate_limit": {"enum": ["reject", "queue"],
                          "description": "queue: a call over a rate window (or its "
                          "provider's endpoint limits) waits in the gateway for room, up to "
                          "queue_max_wait_s, instead of a 429 at once (default reject)"},
        "queue_max_wait_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600,
                             "description": "default 30"},
    },
}
_KEY = {
    "type": "object",
    "properties": {
        "id": {"type": "string"}, "agent": {"type": "string"},
        "group": {"type": ["string", "null"]}, "name": {"type": ["string", "null"]},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "created_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "revoked_at": {"type": ["string", "null"], "format": "date-time"},
        "policy": {"oneOf": [{"$ref": "#/components/schemas/Policy"}, {"type": "null"}]},
    },
}
_USAGE = {
    "type": "object",
    "properties": {
        "scope": {"type": "string"},
        "windows": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"enum": ["rpm", "rph", "rpd", "tpm"]}, "limit": {"type": "integer"},
            "used": {"type": "integer"}, "remaining": {"type": "integer"},
            "reset_at": {"type": "string", "format": "date-time"}}}},
        "budgets": {"type": "array", "items": {"type": "object", "properties": {
            "period": {"type": "string"}, "mode": {"type": "string"}, "cap_usd": _USD,
            "spent_usd": _USD, "reserved_usd": _USD, "remaining_usd": _USD,
            "resets_at": {"type": ["string", "null"], "format": "date-time"},
            "projected_usd": {"type": ["string", "null"]}}}},
        "spend_by_model": {"type": "object", "additionalProperties": _USD},
        "spend_by_vendor": {"type": "object", "additionalProperties": _USD},
        "exhausted_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
_ERROR = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "string"},
    "param": {"type": ["string", "null"]}}}}}


def _ok(schema: dict[str, Any], status: str = "200", text: str = "OK") -> dict[str, Any]:
    return {status: {"description": text,
                     "content": {"application/json": {"schema": schema}}},
            "default": {"description": "error",
                        "content": {"application/json": {"schema": _ref("Error")}}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_SCOPE = [{"name": "scope", "in": "path", "required": True, "schema": {"type": "string"},
           "description": "key:<id>, agent:<name>, group:<name>, vendor:<name> or global"}]


_FORMAT = {"name": "format", "in": "query", "schema": {"enum": ["json", "csv"]},
           "description": "csv: a header row, then a line per row or point"}


def openapi_document() -> dict[str, Any]:
    new_key = {"type": "object", "required": ["agent"], "properties": {
        "agent": {"type": "string"}, "name": {"type": "string"},
        "ttl_seconds": {"type": "number", "exclusiveMinimum": 0},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "policy": _ref("Policy")}}
    minted = {"allOf": [_ref("Key"), {"type": "object", "properties": {
        "key": {"type": "string", "description": "the secret, shown only here"},
        "agent_created": {"type": "boolean",
                          "description": "the agent did not exist: the key created it"},
        "default_policy": {"type": "boolean",
                           "description": "the new agent was given the configuration's "
                           "default_policy"}}}]}
    stored = {"allOf": [_ref("Policy"), {"type": "object", "properties": {
        "scope": {"type": "string"}, "managed_by": {"type": ["string", "null"]},
        "removed": {"type": "object", "description": "the fields the change removed, with "
                    "their old values (`budgets`: the budgets dropped)"},
        "warning": {"type": "string", "description": "the scope names nothing that exists "
                    "yet"}}}]}
    written = [*_SCOPE,
               {"name": "allow_unpriced", "in": "query", "schema": {"enum": ["true", "false"]},
                "description": "true: allow `models` that are neither priced nor aliases"}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Outlay admin API", "version": __version__},
        "components": {
            "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Budget": _BUDGET, "Policy": _POLICY, "Key": _KEY, "Usage": _USAGE,
                        "Error": _ERROR},
        },
        "security": [{"admin": []}],
        "paths": {
            "/admin/v1/openapi.json": {
                "get": {"summary": "This document", "security": [],
                        "responses": _ok({"type": "object"})}},
            "/admin/v1/keys": {
                "post": {"summary": "Mint a key (an agent that does not exist is created)",
                         "parameters": [{"name": "allow_unpriced", "in": "query",
                                         "schema": {"enum": ["true", "false"]}}],
                         "requestBody": _body(new_key),
                         "responses": _ok(minted, "201", "Created")},
                "get": {"summary": "List keys: every one oldest first, or with `limit` the "
                                   "newest that many, newest first", "parameters": [
                    {"name": "agent", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
                    {"name": "active", "in": "query", "schema": {"enum": ["true", "false"]},
                     "description": "true: only keys neither revoked nor expired"}],
                        "responses": _ok({"type": "object", "properties": {
                            "keys": {"type": "array", "items": _ref("Key")},
                            "more": {"type": "boolean",
                                     "description": "with `limit`: more keys match"}}})},
            },
            "/admin/v1/keys/{id}": {
                "get": {"summary": "Show a key", "parameters": _ID, "responses": _ok(_ref("Key"))},
                "patch": {"summary": "Update a key's name, labels or policy", "parameters": _ID,
                          "requestBody": _body({"type": "object", "properties": {
                              "name": {"type": "string"}, "labels": {"type": "object"},
                              "policy": _ref("Policy")}}),
                          "responses": _ok(_ref("Key"))},
            },
            "/admin/v1/keys/{id}/revoke": {
                "post": {"summary": "Revoke a key everywhere", "parameters": _ID,
                         "responses": _ok(_ref("Key"))}},
            "/admin/v1/agents": {
                "post": {"summary": "Create a new agent (409 agent_exists for one that exists)",
                         "requestBody": _body({
                             "type": "object", "required": ["name"],
                             "additionalProperties": False, "properties": {
                                 "name": {"type": "string"}, "group": {"type": "string"}}}),
                         "responses": _ok({"type": "object"}, "201", "Created")},
                "get": {"summary": "List agents", "responses": _ok({"type": "object"})},
            },
            "/admin/v1/agents/{name}": {
                "patch": {"summary": "Move an agent to another group", "parameters": [
                    {"name": "name", "in": "path", "required": True,
                     "schema": {"type": "string"}}],
                          "requestBody": _body({"type": "object", "required": ["group"],
                                                "additionalProperties": False,
                                                "properties": {"group": {"type": "string"}}}),
                          "responses": _ok({"type": "object"})},
            },
            "/admin/v1/groups": {"get": {"summary": "List groups",
                                         "responses": _ok({"type": "object"})}},
            "/admin/v1/policies": {"get": {
                "summary": "List policies", "parameters": [
                    {"name": "keys", "in": "query", "schema": {"enum": ["true", "false"]},
                     "description": "false: leave out keys' own policies"}],
                "responses": _ok({"type": "object"})}},
            "/admin/v1/policies/{scope}": {
                "put": {"summary": "Replace a scope's policy (409 budget_would_be_dropped "
                                   "unless drop_budgets=true)", "parameters": [
                    *written, {"name": "drop_budgets", "in": "query",
                               "schema": {"enum": ["true", "false"]},
                               "description": "true: remove budgets the new policy does not "
                               "name"}],
                        "requestBody": _body(_ref("Policy")), "responses": _ok(stored)},
                "patch": {"summary": "Change only the fields given (null removes one)",
                          "parameters": written, "requestBody": _body(_ref("Policy")),
                          "responses": _ok(stored)},
                "get": {"summary": "Show a scope's policy", "parameters": _SCOPE,
                        "responses": _ok(_ref("Policy"))},
                "delete": {"summary": "Remove a scope's policy", "parameters": _SCOPE,
                           "responses": _ok({"type": "object"})},
            },
            "/admin/v1/usage/{scope}": {"get": {
                "summary": "Live usage of a scope", "parameters": _SCOPE,
                "responses": _ok(_ref("Usage"))}},
            "/admin/v1/audit": {"get": {
                "summary": "The audit ledger, newest first", "parameters": [
                    {"name": "scope", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                "responses": _ok({"type": "object", "properties": {
                    "entries": {"type": "array", "items": {"type": "object"}}}})}},
            "/admin/v1/reports": {"get": {
                "summary": "Spend report", "parameters": [
                    {"name": "group_by", "in": "query", "schema": {"type": "string"},
                     "description": "key, agent, group, vendor, model or label:<name>"},
                    {"name": "since_ms", "in": "query", "schema": {"type": "integer"}},
                    _FORMAT],
                "responses": _ok({"type": "object"})}},
            "/admin/v1/reports/series": {"get": {
                "summary": "Spend over time: a point per interval, zeros included",
                "parameters": [
                    {"name": "scope", "in": "query", "schema": {"type": "string"}},
                    {"name": "interval", "in": "query", "schema": {"enum": ["hour", "day"]}},
                    {"name": "since", "in": "query", "schema": {"type": "string"},
                     "description": "ISO 8601 date or time, or unix ms"},
                    {"name": "until", "in": "query", "schema": {"type": "string"},
                     "description": "ISO 8601 date or time, or unix ms (excluded)"},
                    {"name": "split", "in": "query",
                     "schema": {"enum": ["vendor", "model", "agent", "code"]}},
                    _FORMAT],
                "responses": _ok({"type": "object", "properties": {
                    "scope": {"type": "string"}, "interval": {"type": "string"},
                    "points": {"type": "array", "items": {"type": "object", "properties": {
                        "start": {"type": "string"}, "requests": {"type": "integer"},
                        "refused": {"type": "integer"},
                        "cost_usd": {"type": "string"}}}}}})}},
            "/admin/v1/prices": {"get": {"summary": "The price table in force",
                                         "responses": _ok({"type": "object"})}},
            "/admin/v1/prices/{model}": {"get": {
                "summary": "One model as a request naming it is priced, every dimension",
                "parameters": [{"name": "model", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": _ok({"type": "object"})}},
            "/admin/v1/providers": {"get": {
                "summary": "Every provider and vendor endpoint and its circuit breaker, as "
                           "the worker that answers sees it",
                "responses": _ok({"type": "object", "properties": {
                    "worker": {"type": "integer"},
                    "providers": {"type": "array", "items": {"type": "object", "properties": {
                        "kind": {"enum": ["llm", "vendor"]}, "provider": {"type": "string"},
                        "base_url": {"type": "string"}, "weight": {"type": "integer"},
                        "state": {"enum": ["closed", "open", "half_open"]},
                        "consecutive_failures": {"type": "integer"}}}}}})}},
            **approval_paths(),
            **webhook_paths(),
            **access_paths(),
        },
    }
