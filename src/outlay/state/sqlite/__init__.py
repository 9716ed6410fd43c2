"""The embedded store: one SQLite file that a host's worker processes share."""

from outlay.state.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
