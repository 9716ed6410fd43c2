"""The PostgreSQL store's administration: the admin token, agents, groups, keys, policies.

The embedded store's semantics (`sqlite_admin.py`), with one difference: putting a policy
touches no counters, since the replicated backend keeps those in Redis.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

import orjson

from outlay.policy.decision import KeyInfo
from outlay.policy.model import Policy
from outlay.state.announcements import key_revoked
from outlay.state.base import KeyRecord, NewKey, NotFound
from outlay.state.config_policies import META_KEY, ConfigPolicies, parse
from outlay.state.keys import hash_secret, key_filter, new_key_id, new_secret
from outlay.state.postgres.outbox import announce
from outlay.state.postgres.pool import Cursor, Pooled, Row
from outlay.state.stored_policy import parse_stored_policy

_KEY_COLUMNS = (
    "SELECT k.id, k.agent, a.grp, k.name, k.labels, k.created_ms, k.expires_ms, "
    "k.revoked_ms, p.body FROM keys k JOIN agents a ON a.name = k.agent "
    "LEFT JOIN policies p ON p.scope = 'key:' || k.id")
_KEY_ORDER = " ORDER BY k.created_ms, k.seq"


def _key_record(row: Row) -> KeyRecord:
    key_id, agent, grp, name, labels, created, expires, revoked, policy = row
    return KeyRecord(key_id, agent, grp, name, json.loads(labels), created, expires, revoked,
                     parse_stored_policy(policy) if policy else None)


class AdminMixin(Pooled):
    async def init_admin_token(self, configured: str | None) -> str | None:
        """Use the configured token, or make one on first start; return a new one to print.
        Replicas starting together make one token between them."""
        async with self.tx() as cur:
            if configured:
                await cur.execute("INSERT INTO meta(k, v) VALUES ('admin_token', %s) "
                                  "ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                                  (hash_secret(configured),))
                return None
            token = "oladm_" + secrets.token_urlsafe(24)
            await cur.execute("INSERT INTO meta(k, v) VALUES ('admin_token', %s) "
                              "ON CONFLICT (k) DO NOTHING", (hash_secret(token),))
            return token if cur.rowcount else None

    async def admin_token_ok(self, token: str) -> bool:
        row = await self.fetchone("SELECT v FROM meta WHERE k = 'admin_token'")
        return row is not None and secrets.compare_digest(row[0], hash_secret(token))

    async def _ensure_agent(self, cur: Cursor, name: str, group: str | None) -> None:
        now = self.clock()
        if group:
            await cur.execute("INSERT INTO groups(name, created_ms) VALUES (%s, %s) "
                              "ON CONFLICT (name) DO NOTHING", (group, now))
        await cur.execute("INSERT INTO agents(name, grp, created_ms) VALUES (%s, %s, %s) "
                          "ON CONFLICT (name) DO NOTHING", (name, group, now))

    async def create_agent(self, name: str, group: str | None) -> dict[str, Any]:
        async with self.tx() as cur:
            await self._ensure_agent(cur, name, group)
            if group is not None:
                await cur.execute("UPDATE agents SET grp = %s WHERE name = %s", (group, name))
            await cur.execute("SELECT name, grp FROM agents WHERE name = %s", (name,))
            row = await cur.fetchone()
        assert row is not None  # made just above, in the same transaction
        return {"name": row[0], "group": row[1]}

    async def list_agents(self) -> list[dict[str, Any]]:
        rows = await self.fetchall('SELECT name, grp FROM agents ORDER BY name COLLATE "C"')
        return [{"name": n, "group": g} for n, g in rows]

    async def list_groups(self) -> list[dict[str, Any]]:
        rows = await self.fetchall(
            "SELECT g.name, (SELECT COUNT(*) FROM agents a WHERE a.grp = g.name) "
            'FROM groups g ORDER BY g.name COLLATE "C"')
        return [{"name": n, "agents": count} for n, count in rows]

    async def create_key(self, new: NewKey) -> tuple[KeyRecord, str]:
        key_id, secret = new_key_id(), new_secret()
        now = self.clock()
        expires = None if new.ttl_seconds is None else now + int(new.ttl_seconds * 1000)
        async with self.tx() as cur:
            await self._ensure_agent(cur, new.agent, None)
            await cur.execute(
                "INSERT INTO keys(id, hash, agent, name, labels, created_ms, expires_ms) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (key_id, hash_secret(secret), new.agent, new.name,
                 json.dumps(dict(new.labels)), now, expires))
            if new.policy is not None:
                await self._put_policy(cur, f"key:{key_id}", new.policy)
        return await self.get_key(key_id), secret

    async def get_key(self, key_id: str) -> KeyRecord:
        row = await self.fetchone(_KEY_COLUMNS + " WHERE k.id = %s", (key_id,))
        if row is None:
            raise NotFound(f"no key {key_id}")
        return _key_record(row)

    async def list_keys(
        self, agent: str | None = None, *, limit: int | None = None,
        active_at_ms: int | None = None,
    ) -> list[KeyRecord]:
        where, args = key_filter(agent, active_at_ms, "%s")
        if limit is None:
            order = _KEY_ORDER
        else:
            order = " ORDER BY k.created_ms DESC, k.seq DESC LIMIT %s"
            args.append(limit)
        rows = await self.fetchall(_KEY_COLUMNS + where + order, tuple(args))
        return [_key_record(r) for r in rows]

    async def update_key(
        self, key_id: str, name: str | None, labels: Mapping[str, str] | None,
        policy: Policy | None,
    ) -> KeyRecord:
        async with self.tx() as cur:
            await cur.execute("SELECT 1 FROM keys WHERE id = %s FOR UPDATE", (key_id,))
            if await cur.fetchone() is None:
                raise NotFound(f"no key {key_id}")
            if name is not None:
                await cur.execute("UPDATE keys SET name = %s WHERE id = %s", (name, key_id))
            if labels is not None:
                await cur.execute("UPDATE keys SET labels = %s WHERE id = %s",
                                  (json.dumps(dict(labels)), key_id))
            if policy is not None:
                (await self._managed(cur)).check(f"key:{key_id}")
                await self._put_policy(cur, f"key:{key_id}", policy)
        return await self.get_key(key_id)

    async def revoke_key(self, key_id: str) -> KeyRecord:
        async with self.tx() as cur:
            await cur.execute("SELECT 1 FROM keys WHERE id = %s", (key_id,))
            if await cur.fetchone() is None:
                raise NotFound(f"no key {key_id}")
            await self._revoke(cur, [key_id])
        return await self.get_key(key_id)

    async def revoke_keys(self, agent: str | None = None, group: str | None = None
                          ) -> list[str]:
        """The kill switch for a whole agent or group: every live key, at once."""
        column, name = ("k.agent", agent) if agent is not None else ("a.grp", group)
        async with self.tx() as cur:
            await cur.execute(
                "SELECT k.id FROM keys k JOIN agents a ON a.name = k.agent "  # noqa: S608
                f"WHERE {column} = %s AND k.revoked_ms IS NULL ORDER BY k.created_ms, k.seq",
                (name,))
            ids = [r[0] for r in await cur.fetchall()]
            await self._revoke(cur, ids)
        return ids

    async def _revoke(self, cur: Cursor, key_ids: list[str]) -> int:
        now, revoked = self.clock(), 0
        for key_id in key_ids:
            await cur.execute("UPDATE keys SET revoked_ms = %s WHERE id = %s AND "
                              "revoked_ms IS NULL RETURNING agent", (now, key_id))
            row = await cur.fetchone()
            if row is not None:
                revoked += 1
                await announce(cur, now, [key_revoked(key_id, row[0])])
        return revoked

    async def key_by_hash(self, key_hash: str) -> KeyInfo | None:
        row = await self.fetchone(
            "SELECT k.id, k.agent, a.grp, k.labels, k.expires_ms, k.revoked_ms FROM keys k "
            "JOIN agents a ON a.name = k.agent WHERE k.hash = %s", (key_hash,))
        if row is None:
            return None
        key_id, agent, grp, labels, expires, revoked = row
        return KeyInfo(key_id, agent, grp, orjson.loads(labels), expires, revoked is not None)

    async def revoked_among(self, key_ids: list[str]) -> set[str]:
        rows = await self.fetchall(
            "SELECT id FROM keys WHERE revoked_ms IS NOT NULL AND id = ANY(%s)", (key_ids,))
        return {r[0] for r in rows}

    async def _put_policy(self, cur: Cursor, scope: str, policy: Policy) -> None:
        await cur.execute(
            "INSERT INTO policies(scope, body, updated_ms) VALUES (%s, %s, %s) "
            "ON CONFLICT (scope) DO UPDATE SET body = excluded.body, "
            "updated_ms = excluded.updated_ms",
            (scope, json.dumps(policy.to_dict(), sort_keys=True), self.clock()))

    async def put_policy(self, scope: str, policy: Policy) -> Policy:
        """Store a scope's policy. Counters are not touched: the hot state rebuilds its own."""
        async with self.tx() as cur:
            (await self._managed(cur)).check(scope)
            await self._put_policy(cur, scope, policy)
        return policy

    @staticmethod
    async def _managed(cur: Cursor) -> ConfigPolicies:
        await cur.execute("SELECT v FROM meta WHERE k = %s", (META_KEY,))
        row = await cur.fetchone()
        return parse(row[0] if row else None)

    async def config_policies(self) -> ConfigPolicies:
        async with self.tx() as cur:
            return await self._managed(cur)

    async def apply_config_policies(
        self, file: str | None, policies: Mapping[str, Policy]
    ) -> list[str]:
        async with self.tx() as cur:
            before = await self._managed(cur)
            for scope, policy in policies.items():
                await self._put_policy(cur, scope, policy)
            after = ConfigPolicies(file, frozenset(policies))
            await cur.execute("INSERT INTO meta(k, v) VALUES (%s, %s) ON CONFLICT (k) "
                              "DO UPDATE SET v = excluded.v", (META_KEY, after.dump()))
        return before.released(after.scopes)

    async def get_policy(self, scope: str) -> Policy | None:
        row = await self.fetchone("SELECT body FROM policies WHERE scope = %s", (scope,))
        return parse_stored_policy(row[0]) if row else None

    async def delete_policy(self, scope: str) -> None:
        async with self.tx() as cur:
            (await self._managed(cur)).check(scope)
            await cur.execute("DELETE FROM policies WHERE scope = %s", (scope,))

    async def list_policies(self, *, keys: bool = True) -> dict[str, Policy]:
        where = "" if keys else " WHERE scope NOT LIKE 'key:%%'"
        rows = await self.fetchall(
            f'SELECT scope, body FROM policies{where} ORDER BY scope COLLATE "C"')  # noqa: S608
        return {scope: parse_stored_policy(body) for scope, body in rows}

    async def load_policies(self) -> dict[str, Policy]:
        """Every policy by scope, as the hot state loads them."""
        return await self.list_policies()
