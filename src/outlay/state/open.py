"""Which state backend serves a URL; the only place that knows every backend."""

from __future__ import annotations

from typing import Any

from outlay.state.base import StateStore


def store_from_url(url: str, **options: Any) -> StateStore:
    """Pick the backend by URL scheme: sqlite:///path.db (or sqlite:///:memory:), or
    redis://host:port/db (rediss:// with TLS) beside `database=postgresql://…`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"state URL needs a scheme, e.g. sqlite:///outlay.db, got {url!r}")
    database = options.pop("database", None)
    if scheme == "sqlite":
        from outlay.state.sqlite.store import SqliteStore

        if database:
            raise ValueError("`database` is the durable store of a redis:// state; the SQLite "
                             "state keeps everything in its own file: leave `database` unset")
        return SqliteStore(rest[1:] if rest.startswith("/") else rest, **options)
    if scheme in ("redis", "rediss"):
        from outlay.state.redis.store import RedisStore

        return RedisStore(url, database=database, **options)
    raise ValueError(f"unsupported state backend {scheme!r} (supported: sqlite, redis)")
