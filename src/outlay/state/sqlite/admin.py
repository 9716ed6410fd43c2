"""The embedded store's administration: the admin token, agents, groups, keys, policies."""

from __future__ import annotations

import contextlib
import json
import secrets
import sqlite3
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from outlay.policy.decision import KeyInfo
from outlay.policy.model import Policy
from outlay.state import ledger_sql
from outlay.state.announcements import key_revoked
from outlay.state.base import KeyRecord, NewKey, NotFound
from outlay.state.config_policies import META_KEY, ConfigPolicies, parse
from outlay.state.keys import hash_secret, key_filter, new_key_id, new_secret
from outlay.state.sqlite.events import announce
from outlay.state.stored_policy import parse_stored_policy


def read_key(c: sqlite3.Connection, key_hash: str) -> KeyInfo | None:
    """What the request path needs of a key, by the hash of its secret."""
    row = c.execute(
        "SELECT k.id, k.agent, a.grp, k.labels, k.expires_ms, k.revoked_ms FROM keys k "
        "JOIN agents a ON a.name = k.agent WHERE k.hash=?", (key_hash,)).fetchone()
    if row is None:
        return None
    key_id, agent, grp, labels, expires, revoked = row
    return KeyInfo(key_id, agent, grp, orjson.loads(labels), expires, revoked is not None)


class AdminMixin:
    """Mixed into SqliteStore, whose connection, transactions and clock it uses."""

    if TYPE_CHECKING:
        clock: Callable[[], int]

        @property
        def conn(self) -> sqlite3.Connection: ...

        def tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...

    async def init_admin_token(self, configured: str | None) -> str | None:
        """Use the configured token, or make one on first start; return a new one to print."""
        with self.tx() as c:
            if configured:
                c.execute("INSERT OR REPLACE INTO meta(k, v) VALUES ('admin_token', ?)",
                          (hash_secret(configured),))
                return None
            if c.execute("SELECT 1 FROM meta WHERE k='admin_token'").fetchone():
                return None
            token = "oladm_" + secrets.token_urlsafe(24)
            c.execute("INSERT INTO meta(k, v) VALUES ('admin_token', ?)", (hash_secret(token),))
            return token

    async def admin_token_ok(self, token: str) -> bool:
        row = self.conn.execute("SELECT v FROM meta WHERE k='admin_token'").fetchone()
        return row is not None and secrets.compare_digest(row[0], hash_secret(token))

    def _ensure_agent(self, c: sqlite3.Connection, name: str, group: str | None) -> None:
        now = self.clock()
        if group:
            c.execute("INSERT OR IGNORE INTO groups(name, created_ms) VALUES (?, ?)", (group, now))
        c.execute("INSERT OR IGNORE INTO agents(name, grp, created_ms) VALUES (?, ?, ?)",
                  (name, group, now))

    async def create_agent(self, name: str, group: str | None) -> dict[str, Any]:
        with self.tx() as c:
            self._ensure_agent(c, name, group)
            if group is not None:
                c.execute("UPDATE agents SET grp=? WHERE name=?", (group, name))
            row = c.execute("SELECT name, grp FROM agents WHERE name=?", (name,)).fetchone()
        return {"name": row[0], "group": row[1]}

    async def list_agents(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT name, grp FROM agents ORDER BY name").fetchall()
        return [{"name": n, "group": g} for n, g in rows]

    async def list_groups(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT g.name, (SELECT COUNT(*) FROM agents a WHERE a.grp=g.name) "
            "FROM groups g ORDER BY g.name").fetchall()
        return [{"name": n, "agents": count} for n, count in rows]

    async def create_key(self, new: NewKey) -> tuple[KeyRecord, str]:
        key_id, secret = new_key_id(), new_secret()
        now = self.clock()
        expires = None if new.ttl_seconds is None else now + int(new.ttl_seconds * 1000)
        with self.tx() as c:
            self._ensure_agent(c, new.agent, None)
            c.execute(
                "INSERT INTO keys(id, hash, agent, name, labels, created_ms, expires_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key_id, hash_secret(secret), new.agent, new.name,
                 json.dumps(dict(new.labels)), now, expires),
            )
            if new.policy is not None:
                self._put_policy(c, f"key:{key_id}", new.policy)
        return await self.get_key(key_id), secret

    def _key_record(self, row: tuple[Any, ...]) -> KeyRecord:
        key_id, agent, grp, name, labels, created, expires, revoked = row
        policy_row = self.conn.execute(
            "SELECT body FROM policies WHERE scope=?", (f"key:{key_id}",)).fetchone()
        return KeyRecord(key_id, agent, grp, name, json.loads(labels), created, expires, revoked,
                         parse_stored_policy(policy_row[0]) if policy_row else None)

    _KEY_COLUMNS = ("SELECT k.id, k.agent, a.grp, k.name, k.labels, k.created_ms, k.expires_ms, "
                    "k.revoked_ms FROM keys k JOIN agents a ON a.name = k.agent")

    async def get_key(self, key_id: str) -> KeyRecord:
        row = self.conn.execute(self._KEY_COLUMNS + " WHERE k.id=?", (key_id,)).fetchone()
        if row is None:
            raise NotFound(f"no key {key_id}")
        return self._key_record(row)

    async def list_keys(
        self, agent: str | None = None, *, limit: int | None = None,
        active_at_ms: int | None = None,
    ) -> list[KeyRecord]:
        where, args = key_filter(agent, active_at_ms, "?")
        if limit is None:
            order = " ORDER BY k.created_ms"
        else:
            order = " ORDER BY k.created_ms DESC, k.rowid DESC LIMIT ?"
            args.append(limit)
        rows = self.conn.execute(self._KEY_COLUMNS + where + order, args).fetchall()
        return [self._key_record(r) for r in rows]

    async def update_key(
        self, key_id: str, name: str | None, labels: Mapping[str, str] | None,
        policy: Policy | None,
    ) -> KeyRecord:
        with self.tx() as c:
            if c.execute("SELECT 1 FROM keys WHERE id=?", (key_id,)).fetchone() is None:
                raise NotFound(f"no key {key_id}")
            if name is not None:
                c.execute("UPDATE keys SET name=? WHERE id=?", (name, key_id))
            if labels is not None:
                c.execute("UPDATE keys SET labels=? WHERE id=?", (json.dumps(dict(labels)), key_id))
            if policy is not None:
                self._managed(c).check(f"key:{key_id}")
                self._put_policy(c, f"key:{key_id}", policy)
        return await self.get_key(key_id)

    async def revoke_key(self, key_id: str) -> KeyRecord:
        with self.tx() as c:
            known = c.execute("SELECT 1 FROM keys WHERE id=?", (key_id,)).fetchone()
            if known is None:
                raise NotFound(f"no key {key_id}")
            self._revoke(c, [key_id])
        return await self.get_key(key_id)

    async def revoke_keys(self, agent: str | None = None, group: str | None = None
                          ) -> list[str]:
        """The kill switch for a whole agent or group: every live key, at once."""
        column, name = ("k.agent", agent) if agent is not None else ("a.grp", group)
        with self.tx() as c:
            sql = ("SELECT k.id FROM keys k JOIN agents a ON a.name = k.agent "  # noqa: S608
                   f"WHERE {column}=? AND k.revoked_ms IS NULL")
            ids = [r[0] for r in c.execute(sql, (name,))]
            self._revoke(c, ids)
        return ids

    def _revoke(self, c: sqlite3.Connection, key_ids: list[str]) -> int:
        now, revoked = self.clock(), 0
        for key_id in key_ids:
            row = c.execute("UPDATE keys SET revoked_ms=? WHERE id=? AND revoked_ms IS NULL "
                            "RETURNING agent", (now, key_id)).fetchone()
            if row is not None:
                revoked += 1
                announce(c, now, [key_revoked(key_id, row[0])])
        return revoked

    async def key_by_hash(self, key_hash: str) -> KeyInfo | None:
        return read_key(self.conn, key_hash)

    async def revoked_among(self, key_ids: list[str]) -> set[str]:
        marks = ",".join("?" * len(key_ids))
        rows = self.conn.execute(
            f"SELECT id FROM keys WHERE revoked_ms IS NOT NULL AND id IN ({marks})",  # noqa: S608
            key_ids).fetchall()
        return {r[0] for r in rows}


    def _put_policy(self, c: sqlite3.Connection, scope: str, policy: Policy) -> None:
        now = self.clock()
        c.execute("INSERT OR REPLACE INTO policies(scope, body, updated_ms) VALUES (?, ?, ?)",
                  (scope, json.dumps(policy.to_dict(), sort_keys=True), now))
        # A budget put mid-period starts from what the ledger says the scope spent in that
        # period, and holds the scope's calls still in flight; the counter is rebuilt each
        # time, since spend made while the scope had no such budget never reached it.
        where, args = ledger_sql.scope_filter(scope)
        for period, flow, name in {(b.period, b.flow, b.counter) for b in policy.budgets}:
            # only the rows of the budget's flow: spend, or money moved out
            of_flow = "flow IS NULL" if flow == "spend" else "flow = ?"
            flow_args = () if flow == "spend" else (flow,)
            in_flight = ("SELECT id, holds, amount FROM reservations "  # noqa: S608 (fixed column names)
                         f"WHERE {where} AND {of_flow} AND created_ms >= ? "
                         "AND settlement IS NULL")
            start = ledger_sql.period_start_of(period, now)
            spent = sum(c.execute(
                f"SELECT COALESCE(SUM(cost), 0) FROM {source} WHERE {where} "  # noqa: S608 (fixed column names)
                f"AND {of_flow} AND ts_ms >= ? "
                "AND settlement IN ('settled', 'settled_estimate', 'unsettled')",
                (*args, *flow_args, start)).fetchone()[0] for source in ledger_sql.SOURCES)
            reserved = 0
            for rid, holds_text, amount in c.execute(
                    in_flight, (*args, *flow_args, start)).fetchall():
                holds = json.loads(holds_text)
                if not any(h[:3] == [scope, name, start] for h in holds):
                    holds.append([scope, name, start, amount])
                    c.execute("UPDATE reservations SET holds=? WHERE id=?",
                              (json.dumps(holds), rid))
                reserved += amount
            c.execute("INSERT OR REPLACE INTO counters(scope, period, period_start, spent, "
                      "reserved) VALUES (?, ?, ?, ?, ?)", (scope, name, start, spent, reserved))

    async def put_policy(self, scope: str, policy: Policy) -> Policy:
        with self.tx() as c:
            self._managed(c).check(scope)
            self._put_policy(c, scope, policy)
        return policy

    @staticmethod
    def _managed(c: sqlite3.Connection) -> ConfigPolicies:
        row = c.execute("SELECT v FROM meta WHERE k=?", (META_KEY,)).fetchone()
        return parse(row[0] if row else None)

    async def config_policies(self) -> ConfigPolicies:
        return self._managed(self.conn)

    async def apply_config_policies(
        self, file: str | None, policies: Mapping[str, Policy]
    ) -> list[str]:
        with self.tx() as c:
            before = self._managed(c)
            for scope, policy in policies.items():
                self._put_policy(c, scope, policy)
            after = ConfigPolicies(file, frozenset(policies))
            c.execute("INSERT OR REPLACE INTO meta(k, v) VALUES (?, ?)", (META_KEY, after.dump()))
        return before.released(after.scopes)

    async def get_policy(self, scope: str) -> Policy | None:
        row = self.conn.execute("SELECT body FROM policies WHERE scope=?", (scope,)).fetchone()
        return parse_stored_policy(row[0]) if row else None

    async def delete_policy(self, scope: str) -> None:
        with self.tx() as c:
            self._managed(c).check(scope)
            c.execute("DELETE FROM policies WHERE scope=?", (scope,))

    async def list_policies(self, *, keys: bool = True) -> dict[str, Policy]:
        where = "" if keys else " WHERE scope NOT LIKE 'key:%'"
        rows = self.conn.execute(
            f"SELECT scope, body FROM policies{where} ORDER BY scope").fetchall()  # noqa: S608
        return {scope: parse_stored_policy(body) for scope, body in rows}

