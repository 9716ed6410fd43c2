"""The replicated backend's admin access data: PostgreSQL keeps it all (admin tokens, the
admin audit, the sealed webhook secrets), read on every admin call, so a revoked token is
refused by every replica from the moment it is revoked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from outlay.policy.admin_roles import Principal, Role
from outlay.state.access import AdminWrite
from outlay.state.sealing import Sealer

if TYPE_CHECKING:
    from outlay.state.postgres.durable import PostgresDurable


class AccessDelegate:
    durable: PostgresDurable

    async def admin_principal(self, token: str) -> Principal | None:
        return await self.durable.admin_principal(token)

    async def add_admin_token(self, name: str, role: Role, scopes: tuple[str, ...]
                              ) -> tuple[dict[str, Any], str]:
        return await self.durable.add_admin_token(name, role, scopes)

    async def list_admin_tokens(self) -> list[dict[str, Any]]:
        return await self.durable.list_admin_tokens()

    async def get_admin_token(self, token_id: str) -> dict[str, Any]:
        return await self.durable.get_admin_token(token_id)

    async def revoke_admin_token(self, token_id: str) -> dict[str, Any]:
        return await self.durable.revoke_admin_token(token_id)

    async def record_admin_write(self, write: AdminWrite) -> None:
        await self.durable.record_admin_write(write)

    async def admin_audit(self, target: str | None, limit: int,
                          scopes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        return await self.durable.admin_audit(target, limit, scopes)

    async def reseal_secrets(self, sealer: Sealer) -> int:
        return await self.durable.reseal_secrets(sealer)
