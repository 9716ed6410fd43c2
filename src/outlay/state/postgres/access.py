"""PostgreSQL's admin access data (the Redis state's too): admin tokens (hashed) and the
admin audit trail, and re-sealing the webhook secrets it keeps."""

from __future__ import annotations

import secrets
from typing import Any

from psycopg.types.json import Jsonb

from outlay.policy.admin_roles import Principal, Role
from outlay.state.access import (
    AdminWrite,
    audit_view,
    audit_where,
    new_admin_secret,
    new_admin_token_id,
    principal_of,
    root_principal,
    token_view,
)
from outlay.state.base import NotFound
from outlay.state.keys import hash_secret
from outlay.state.postgres.pool import Pooled, state_errors
from outlay.state.sealing import Sealer

_TOKENS = "SELECT id, name, role, scopes, created_ms, revoked_ms FROM admin_tokens"
_AUDIT = ("SELECT seq, ts_ms, token_id, token_name, action, target, agent, grp, before, "
          "after, status FROM admin_audit")


class AccessMixin(Pooled):
    async def admin_principal(self, token: str) -> Principal | None:
        digest = hash_secret(token)
        rows = await self.fetchall(
            "SELECT NULL, NULL, NULL, v FROM meta WHERE k = 'admin_token' UNION ALL "
            "SELECT id, name, role, scopes::text FROM admin_tokens "
            "WHERE hash = %s AND revoked_ms IS NULL", (digest,))
        for row in rows:
            if row[0] is None:
                if secrets.compare_digest(row[3], digest):
                    return root_principal()
            else:
                return principal_of(row)
        return None

    async def add_admin_token(self, name: str, role: Role, scopes: tuple[str, ...]
                              ) -> tuple[dict[str, Any], str]:
        token_id, secret = new_admin_token_id(), new_admin_secret()
        await self.execute(
            "INSERT INTO admin_tokens(id, name, hash, role, scopes, created_ms) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (token_id, name, hash_secret(secret), role, Jsonb(list(scopes)), self.clock()))
        return await self.get_admin_token(token_id), secret

    async def list_admin_tokens(self) -> list[dict[str, Any]]:
        return [token_view(r) for r in await self.fetchall(_TOKENS + " ORDER BY created_ms, id")]

    async def get_admin_token(self, token_id: str) -> dict[str, Any]:
        row = await self.fetchone(_TOKENS + " WHERE id = %s", (token_id,))
        if row is None:
            raise NotFound(f"no admin token {token_id}")
        return token_view(row)

    async def revoke_admin_token(self, token_id: str) -> dict[str, Any]:
        await self.execute("UPDATE admin_tokens SET revoked_ms = %s "
                           "WHERE id = %s AND revoked_ms IS NULL", (self.clock(), token_id))
        return await self.get_admin_token(token_id)

    async def record_admin_write(self, write: AdminWrite) -> None:
        await self.execute(
            "INSERT INTO admin_audit(ts_ms, token_id, token_name, action, target, agent, grp, "
            "before, after, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (self.clock(), write.token_id, write.token_name, write.action, write.target,
             write.agent, write.group, Jsonb(write.before), Jsonb(write.after), write.status))

    async def admin_audit(self, target: str | None, limit: int,
                          scopes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        where, args = audit_where(target, scopes, "%s")
        rows = await self.fetchall(_AUDIT + where + " ORDER BY seq DESC LIMIT %s",
                                   (*args, limit))
        return [audit_view(r) for r in rows]

    async def reseal_secrets(self, sealer: Sealer) -> int:
        resealed = 0
        async with self.tx() as cur:
            await cur.execute("SELECT id, secret, previous_secret FROM webhook_endpoints "
                              "FOR UPDATE")
            for endpoint_id, secret, previous in await cur.fetchall():
                await cur.execute(
                    "UPDATE webhook_endpoints SET secret = %s, previous_secret = %s "
                    "WHERE id = %s", (sealer.reseal(secret),
                                      None if previous is None else sealer.reseal(previous),
                                      endpoint_id))
                resealed += 1 + (previous is not None)
        # the table rewritten: the rows' earlier versions are not left in its files
        with state_errors(self._failed):
            async with self.pool.connection() as conn:
                await conn.set_autocommit(True)
                try:
                    await conn.execute("VACUUM FULL webhook_endpoints")
                finally:
                    await conn.set_autocommit(False)
        self.sealer = sealer
        return resealed
