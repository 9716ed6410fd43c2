"""Roles and scopes of admin tokens: each role may do what those below it may; a scoped token
covers the agents of its groups and the agents it names, and nothing of no fleet."""

from __future__ import annotations

import pytest

from outlay.policy.admin_roles import (
    AccessError,
    Principal,
    parse_role,
    parse_scopes,
    parse_token_name,
    role_allows,
)


def test_roles_are_ordered() -> None:
    assert role_allows("admin", "operator")
    assert role_allows("operator", "viewer")
    assert not role_allows("viewer", "operator")
    assert not role_allows("operator", "admin")
    with pytest.raises(AccessError) as raised:
        parse_role("root")
    assert raised.value.param == "role"


def test_scopes() -> None:
    assert parse_scopes(None) == ()
    assert parse_scopes(["group:a", "agent:b", "group:a"]) == ("group:a", "agent:b")
    for bad in ("group:a", ["team:a"], ["group:"], ["agent"], [1], ["group:a"] * 101):
        with pytest.raises(AccessError):
            parse_scopes(bad)
    with pytest.raises(AccessError):
        parse_token_name("   ")


def test_what_a_scoped_token_covers() -> None:
    lead = Principal("adt_1", "lead", "operator", ("group:billing", "agent:helper"))
    assert lead.covers("bot", "billing")
    assert lead.covers(None, "billing")
    assert lead.covers("helper", "other")
    assert lead.covers("helper", None)
    assert not lead.covers("bot", "other")
    assert not lead.covers("bot", None)
    assert not lead.covers(None, "other")
    everyone = Principal(None, "root", "admin")
    assert everyone.covers("bot", None)
    assert everyone.covers(None, None)
