"""What an admin call acts on, and the fleet it belongs to: the target of a route (a key,
an agent, a group, a policy's scope, an approval, a webhook, an admin token), found through
the store, so that the access rules can judge a scoped token and the admin audit can name
and snapshot what changed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from outlay.policy.admin_roles import Principal
from outlay.state.access import AccessStore
from outlay.state.base import NotFound, StateStore
from outlay.webhooks.outbox import WebhookStore

Member = tuple[str | None, str | None]  # (agent, group): an agent in a group, or a whole group


@dataclass(frozen=True)
class Target:
    """`name` as the admin audit records it (`key:key_…`, `policy:agent:a`, …), and the
    fleet members it touches; none: it belongs to no fleet (global data, webhooks, tokens)."""

    name: str
    members: tuple[Member, ...] = ()

    def within(self, principal: Principal) -> bool:
        if not principal.scoped:
            return True
        return bool(self.members) and all(principal.covers(a, g) for a, g in self.members)

    @property
    def agent(self) -> str | None:
        return self.members[0][0] if self.members else None

    @property
    def group(self) -> str | None:
        return self.members[0][1] if self.members else None


class Fleet:
    """Agents' groups and keys' owners, read from the store once per admin call."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._groups: dict[str, str | None] | None = None
        self._keys: dict[str, Member] = {}
        self._all_keys = False

    async def group_of(self, agent: str) -> str | None:
        if self._groups is None:
            self._groups = {a["name"]: a["group"] for a in await self.store.list_agents()}
        return self._groups.get(agent)

    async def agent_exists(self, agent: str) -> bool:
        await self.group_of(agent)
        return self._groups is not None and agent in self._groups

    async def key(self, key_id: str) -> Member | None:
        """The agent and group of a key; None when there is no such key."""
        if key_id not in self._keys and not self._all_keys:
            try:
                record = await self.store.get_key(key_id)
            except NotFound:
                return None
            self._keys[key_id] = (record.agent, record.group)
        return self._keys.get(key_id)

    async def load_keys(self) -> None:
        if not self._all_keys:
            self._keys = {r.id: (r.agent, r.group) for r in await self.store.list_keys()}
            self._all_keys = True

    async def scope_target(self, scope: str, prefix: str = "") -> Target:
        """The target of a policy or usage scope (`key:`, `agent:`, `group:`, `vendor:`,
        `global`)."""
        kind, _, name = scope.partition(":")
        if kind == "key":
            member = await self.key(name)
            return Target(prefix + scope, (member,) if member else ())
        if kind == "agent":
            return Target(prefix + scope, ((name, await self.group_of(name)),))
        if kind == "group":
            return Target(prefix + scope, ((None, name),))
        return Target(prefix + scope)

    async def covers_scope(self, principal: Principal, scope: str) -> bool:
        return (await self.scope_target(scope)).within(principal)


async def snapshot(store: StateStore, target: Target | None) -> Any:
    """The target's value as the admin audit records it before and after a write; None when
    it does not exist (before a create, after a delete)."""
    if target is None:
        return None
    kind, _, name = target.name.partition(":")
    try:
        if kind == "key":
            record = await store.get_key(name)
            return {"id": record.id, "agent": record.agent, "group": record.group,
                    "name": record.name, "labels": dict(record.labels),
                    "expires_ms": record.expires_ms, "revoked_ms": record.revoked_ms,
                    "policy": None if record.policy is None else record.policy.to_dict()}
        if kind == "policy":
            policy = await store.get_policy(name)
            return None if policy is None else policy.to_dict()
        if kind in ("agent", "group"):
            agents = {a["name"]: a["group"] for a in await store.list_agents()}
            members = [name] if kind == "agent" else [a for a, g in agents.items() if g == name]
            live: list[str] = []
            for agent in members:
                live += (r.id for r in await store.list_keys(agent) if r.revoked_ms is None)
            live.sort()
            if kind == "agent":
                if name not in agents:
                    return None
                return {"name": name, "group": agents[name], "live_keys": live}
            return {"group": name, "live_keys": live}
        if kind == "approval":
            return await store.get_approval(name)
        if kind == "webhook" and isinstance(store, WebhookStore):
            return await store.get_webhook(name)
        if kind == "admin-token" and isinstance(store, AccessStore):
            return await store.get_admin_token(name)
    except NotFound:
        return None
    return None
