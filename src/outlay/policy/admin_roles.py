"""Who may do what on the admin API: the roles of admin tokens, their scopes (groups or
agents), and whether a target lies within them. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")  # each may do what those before may
ROOT_NAME = "admin-token"  # the name the audit gives the token of OUTLAY_ADMIN_TOKEN
MAX_SCOPES = 100
MAX_NAME = 100


class AccessError(ValueError):
    """A role, scope or token name that cannot be used; `param` names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def parse_role(value: object) -> Role:
    for role in ROLES:
        if value == role:
            return role
    raise AccessError(f"role must be one of {', '.join(ROLES)}", "role")


def parse_token_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME or not (
            value.isprintable()):
        raise AccessError(f"name is required: printable text of at most {MAX_NAME} "
                          "characters (it names the token in the admin audit)", "name")
    return value


def parse_scopes(value: object) -> tuple[str, ...]:
    """`group:<name>` or `agent:<name>` entries; none (or an empty list): every fleet."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_SCOPES:
        raise AccessError(f"scopes must be a list of at most {MAX_SCOPES} entries, each "
                          "group:<name> or agent:<name>", "scopes")
    scopes: list[str] = []
    for entry in value:
        kind, sep, name = entry.partition(":") if isinstance(entry, str) else ("", "", "")
        if kind not in ("group", "agent") or not sep or not name or not name.isprintable():
            raise AccessError(f"scopes entry {entry!r} must be group:<name> or "
                              "agent:<name>", "scopes")
        if entry not in scopes:
            scopes.append(entry)
    return tuple(scopes)


def role_allows(held: Role, needed: Role) -> bool:
    return ROLES.index(held) >= ROLES.index(needed)


@dataclass(frozen=True)
class Principal:
    """The admin token a request presented: its id (None for OUTLAY_ADMIN_TOKEN's), name,
    role and scopes (empty: every fleet)."""

    id: str | None
    name: str
    role: Role
    scopes: tuple[str, ...] = ()

    @property
    def scoped(self) -> bool:
        return bool(self.scopes)

    def covers(self, agent: str | None, group: str | None) -> bool:
        """True when an agent (in `group`), or a whole group (agent None), is within
        this token's scopes."""
        if not self.scopes:
            return True
        if agent is not None and f"agent:{agent}" in self.scopes:
            return True
        return group is not None and f"group:{group}" in self.scopes

    def scope_text(self) -> str:
        return ", ".join(self.scopes) if self.scopes else "every fleet"


def groups_and_agents(scopes: Iterable[str]) -> tuple[list[str], list[str]]:
    """The group names and the agent names among scopes."""
    groups: list[str] = []
    agents: list[str] = []
    for scope in scopes:
        kind, _, name = scope.partition(":")
        (groups if kind == "group" else agents).append(name)
    return groups, agents
