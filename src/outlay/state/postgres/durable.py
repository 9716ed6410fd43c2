"""The durable half of the replicated backend: PostgreSQL holds keys (hashed), agents, groups,
policies, the admin token, approvals, the webhook outbox and the audit ledger, shared by any
number of gateway replicas. Hot counters and reservations live in Redis (`redis.py`), which
writes the ledger here through `apply_wal`.

Every driver or pool error surfaces as StateError (the gateway fails closed); NotFound and
ValueError are raised where the embedded store raises them.

    PostgresDurable
      ├─ AdminMixin       postgres_admin.py      admin token, agents, groups, keys, policies
      ├─ AccessMixin      postgres/access.py     admin tokens with roles, the admin audit
      ├─ ApprovalsMixin   postgres_approvals.py  open, decide, claim and release approvals
      ├─ OutboxMixin      postgres_outbox.py     webhook endpoints, outbox, deliveries
      ├─ LedgerMixin      postgres_ledger.py     apply_wal, audit, reports, rebuild queries
      └─ EpochMixin       postgres/epoch.py      the Redis state's epoch, answered calls
           all on Pooled  postgres_pool.py       the pool, transactions, errors
    migrations            postgres_schema.py
"""

from __future__ import annotations

from collections.abc import Callable

from outlay.state.clock import wall_ms
from outlay.state.postgres.access import AccessMixin
from outlay.state.postgres.admin import AdminMixin
from outlay.state.postgres.approvals import ApprovalsMixin
from outlay.state.postgres.epoch import EpochMixin
from outlay.state.postgres.ledger import LedgerMixin
from outlay.state.postgres.outbox import OutboxMixin
from outlay.state.postgres.schema import migrate


class PostgresDurable(AdminMixin, AccessMixin, ApprovalsMixin, OutboxMixin, LedgerMixin,
                      EpochMixin):
    """One installation's durable state in one PostgreSQL database."""

    def __init__(
        self, dsn: str, *, clock: Callable[[], int] = wall_ms, min_size: int = 1,
        max_size: int = 4, timeout_s: float = 5.0, reconnect_s: float = 10.0,
    ) -> None:
        super().__init__(dsn, clock=clock, min_size=min_size, max_size=max_size,
                         timeout_s=timeout_s, reconnect_s=reconnect_s)

    async def open(self) -> None:
        """Bring the schema up to date (once, whichever replica starts first), then pool."""
        if self.opened:
            return
        await migrate(self.dsn)
        await self.open_pool()

    async def close(self) -> None:
        await self.close_pool()

    @property
    def opened(self) -> bool:
        return self._pool is not None
