"""What PostgreSQL remembers of the Redis beside it: the epoch of the hot state's last
rebuild (written here first, then into Redis), so that a Redis holding another epoch, or
none, is known to hold a state that is not the one the ledger's replicas last built."""

from __future__ import annotations

from outlay.state.postgres.pool import Pooled


def _key(tenant: str) -> str:
    return f"redis_epoch:{tenant}"


class EpochMixin(Pooled):
    async def redis_epoch(self, tenant: str) -> str | None:
        """The epoch of the tenant's last rebuild; None on a new installation."""
        row = await self.fetchone("SELECT v FROM meta WHERE k = %s", (_key(tenant),))
        return None if row is None else str(row[0])

    async def set_redis_epoch(self, tenant: str, epoch: str) -> None:
        await self.execute("INSERT INTO meta(k, v) VALUES (%s, %s) "
                           "ON CONFLICT (k) DO UPDATE SET v = excluded.v", (_key(tenant), epoch))

    async def answered_among(self, request_ids: list[str]) -> set[str]:
        """Those of `request_ids` whose ledger row is no longer pending: answered and
        settled (or refused), so a reservation still held under that id in Redis is one
        whose decision never reached its worker."""
        rows = await self.fetchall(
            "SELECT request_id FROM ledger WHERE request_id = ANY(%s) "
            "AND settlement <> 'pending'", (request_ids,))
        return {r[0] for r in rows}
