"""The replicated store: hot counters and reservations in Redis, one Lua script per decision,
beside PostgreSQL as the durable store."""

from outlay.state.redis.store import RedisStore

__all__ = ["RedisStore"]
