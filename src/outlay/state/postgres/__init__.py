"""PostgreSQL, the durable store of a Redis state: keys, policies, the ledger, approvals and
the webhook outbox."""

from outlay.state.postgres.durable import PostgresDurable

__all__ = ["PostgresDurable"]
