"""The embedded store's admin access data: admin tokens (hashed) and the admin audit trail,
and re-sealing the webhook secrets it keeps."""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from outlay.policy.admin_roles import Principal, Role
from outlay.state.access import (
    AdminWrite,
    audit_view,
    audit_where,
    dumped,
    new_admin_secret,
    new_admin_token_id,
    principal_of,
    root_principal,
    token_view,
)
from outlay.state.base import NotFound
from outlay.state.keys import hash_secret
from outlay.state.sealing import Sealer

# the audit has no UPDATE or DELETE anywhere in Outlay; the triggers refuse them even to a
# hand-written statement of a later version's code
ACCESS_SCHEMA = """
CREATE TABLE IF NOT EXISTS admin_tokens (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL,
  scopes TEXT NOT NULL, created_ms INTEGER NOT NULL, revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS admin_audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, token_id TEXT,
  token_name TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, agent TEXT, grp TEXT,
  before TEXT, after TEXT, status INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS admin_audit_target ON admin_audit(target, seq);
CREATE TRIGGER IF NOT EXISTS admin_audit_no_update BEFORE UPDATE ON admin_audit
BEGIN SELECT RAISE(ABORT, 'the admin audit cannot be changed'); END;
CREATE TRIGGER IF NOT EXISTS admin_audit_no_delete BEFORE DELETE ON admin_audit
BEGIN SELECT RAISE(ABORT, 'the admin audit cannot be changed'); END;
"""

_TOKENS = "SELECT id, name, role, scopes, created_ms, revoked_ms FROM admin_tokens"
_AUDIT = ("SELECT seq, ts_ms, token_id, token_name, action, target, agent, grp, before, "
          "after, status FROM admin_audit")


class AccessMixin:
    """Mixed into SqliteStore, whose connection, transactions and clock it uses."""

    if TYPE_CHECKING:
        clock: Callable[[], int]
        sealer: Sealer

        @property
        def conn(self) -> sqlite3.Connection: ...

        def tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...

    async def admin_principal(self, token: str) -> Principal | None:
        digest = hash_secret(token)
        row = self.conn.execute("SELECT v FROM meta WHERE k='admin_token'").fetchone()
        if row is not None and secrets.compare_digest(row[0], digest):
            return root_principal()
        found = self.conn.execute("SELECT id, name, role, scopes FROM admin_tokens "
                                  "WHERE hash=? AND revoked_ms IS NULL", (digest,)).fetchone()
        return None if found is None else principal_of(found)

    async def add_admin_token(self, name: str, role: Role, scopes: tuple[str, ...]
                              ) -> tuple[dict[str, Any], str]:
        token_id, secret = new_admin_token_id(), new_admin_secret()
        with self.tx() as c:
            c.execute("INSERT INTO admin_tokens(id, name, hash, role, scopes, created_ms) "
                      "VALUES (?, ?, ?, ?, ?, ?)",
                      (token_id, name, hash_secret(secret), role, dumped(list(scopes)),
                       self.clock()))
        return await self.get_admin_token(token_id), secret

    async def list_admin_tokens(self) -> list[dict[str, Any]]:
        return [token_view(r) for r in self.conn.execute(_TOKENS + " ORDER BY created_ms, id")]

    async def get_admin_token(self, token_id: str) -> dict[str, Any]:
        row = self.conn.execute(_TOKENS + " WHERE id=?", (token_id,)).fetchone()
        if row is None:
            raise NotFound(f"no admin token {token_id}")
        return token_view(row)

    async def revoke_admin_token(self, token_id: str) -> dict[str, Any]:
        with self.tx() as c:
            if c.execute("SELECT 1 FROM admin_tokens WHERE id=?", (token_id,)).fetchone() is None:
                raise NotFound(f"no admin token {token_id}")
            c.execute("UPDATE admin_tokens SET revoked_ms=? WHERE id=? AND revoked_ms IS NULL",
                      (self.clock(), token_id))
        return await self.get_admin_token(token_id)

    async def record_admin_write(self, write: AdminWrite) -> None:
        with self.tx() as c:
            c.execute("INSERT INTO admin_audit(ts_ms, token_id, token_name, action, target, "
                      "agent, grp, before, after, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (self.clock(), write.token_id, write.token_name, write.action,
                       write.target, write.agent, write.group, dumped(write.before),
                       dumped(write.after), write.status))

    async def admin_audit(self, target: str | None, limit: int,
                          scopes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        where, args = audit_where(target, scopes, "?")
        rows = self.conn.execute(_AUDIT + where + " ORDER BY seq DESC LIMIT ?",
                                 (*args, limit)).fetchall()
        return [audit_view(r) for r in rows]

    async def reseal_secrets(self, sealer: Sealer) -> int:
        resealed = 0
        # what the rows held before is overwritten, not left in free space or the WAL
        self.conn.execute("PRAGMA secure_delete=ON")
        try:
            with self.tx() as c:
                rows = c.execute("SELECT id, secret, previous_secret FROM webhook_endpoints"
                                 ).fetchall()
                for endpoint_id, secret, previous in rows:
                    c.execute(
                        "UPDATE webhook_endpoints SET secret=?, previous_secret=? WHERE id=?",
                        (sealer.reseal(secret),
                         None if previous is None else sealer.reseal(previous), endpoint_id))
                    resealed += 1 + (previous is not None)
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.conn.execute("PRAGMA secure_delete=OFF")
        self.sealer = sealer
        return resealed
