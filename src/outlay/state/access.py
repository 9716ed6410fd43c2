"""What a state backend keeps for admin access control: admin tokens with roles and scopes
(stored as hashes), and the admin audit trail of every admin write. Implemented by the
embedded store (`sqlite/access.py`) and by PostgreSQL (`postgres/access.py`), which the
Redis state hands its admin data to."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import orjson

from outlay.policy.admin_roles import ROOT_NAME, Principal, Role, groups_and_agents, parse_role
from outlay.policy.decide import iso
from outlay.state.sealing import Sealer

MAX_ADMIN_AUDIT = 1000


def new_admin_token_id() -> str:
    return "adt_" + secrets.token_hex(8)


def new_admin_secret() -> str:
    return "oladm_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class AdminWrite:
    """One admin write, as the trail records it: who (the token's id and name), when, what
    (the route), the target and its fleet, and the target's value before and after."""

    token_id: str | None
    token_name: str
    action: str  # "PUT /admin/v1/policies/{scope}"
    target: str  # "policy:agent:a", "key:key_…", "agent:a", "webhook:wh_…", …
    agent: str | None
    group: str | None
    before: Any
    after: Any
    status: int


def token_view(row: Sequence[Any]) -> dict[str, Any]:
    """id, name, role, scopes (JSON text), created_ms, revoked_ms as answered."""
    token_id, name, role, scopes, created, revoked = row
    return {"id": token_id, "name": name, "role": role,
            "scopes": list(orjson.loads(scopes) if isinstance(scopes, str | bytes) else scopes),
            "created_at": iso(created),
            "revoked_at": None if revoked is None else iso(revoked)}


def principal_of(row: Sequence[Any]) -> Principal:
    """id, name, role, scopes (JSON text or a list) of a live admin token."""
    token_id, name, role, scopes = row
    listed = orjson.loads(scopes) if isinstance(scopes, str | bytes) else scopes
    return Principal(token_id, name, parse_role(role), tuple(listed))


def root_principal() -> Principal:
    return Principal(None, ROOT_NAME, "admin")


def audit_view(row: Sequence[Any]) -> dict[str, Any]:
    """seq, ts_ms, token_id, token_name, action, target, agent, grp, before, after, status."""
    seq, ts, token_id, name, action, target, agent, grp, before, after, status = row
    return {"id": seq, "time": iso(ts), "token_id": token_id, "token_name": name,
            "action": action, "target": target, "agent": agent, "group": grp,
            "before": _json(before), "after": _json(after), "status": status}


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def dumped(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def audit_where(target: str | None, scopes: tuple[str, ...], mark: str
                ) -> tuple[str, list[Any]]:
    """The WHERE clause of an admin audit read: of `target`, within `scopes`."""
    where: list[str] = []
    args: list[Any] = []
    if target is not None:
        where.append(f"target = {mark}")
        args.append(target)
    if scopes:
        groups, agents = groups_and_agents(scopes)
        either = [f"grp = {mark}"] * len(groups) + [f"agent = {mark}"] * len(agents)
        where.append("(" + " OR ".join(either) + ")")
        args += groups + agents
    return (" WHERE " + " AND ".join(where) if where else ""), args


@runtime_checkable
class AccessStore(Protocol):
    async def admin_principal(self, token: str) -> Principal | None:
        """The live admin token whose secret is `token` (OUTLAY_ADMIN_TOKEN's is an admin
        of every fleet); None when it is unknown or revoked. Read on every call, never
        cached, so a revocation holds on every replica at once."""
    async def add_admin_token(self, name: str, role: Role, scopes: tuple[str, ...]
                              ) -> tuple[dict[str, Any], str]: ...
    async def list_admin_tokens(self) -> list[dict[str, Any]]: ...
    async def get_admin_token(self, token_id: str) -> dict[str, Any]: ...
    async def revoke_admin_token(self, token_id: str) -> dict[str, Any]: ...
    async def record_admin_write(self, write: AdminWrite) -> None: ...
    async def admin_audit(self, target: str | None, limit: int,
                          scopes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The newest admin writes first (of `target`, within `scopes` when given)."""
    async def reseal_secrets(self, sealer: Sealer) -> int:
        """Every kept secret sealed again with `sealer`'s key (which opens the old ones);
        the number re-sealed."""
