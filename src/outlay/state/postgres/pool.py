"""The PostgreSQL store's plumbing: a pool of autocommit connections, one transaction per
write, and every driver or pool error turned into StateError at this boundary."""

from __future__ import annotations

import contextlib
import select
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from outlay.state.base import StateError
from outlay.state.sealing import Sealer

CONNECT_TIMEOUT_S = 5
Cursor = psycopg.AsyncCursor[TupleRow]
Row = tuple[Any, ...]
Connection = psycopg.AsyncConnection[TupleRow]
# the connection whose one snapshot a task's reads see (Pooled.snapshot), per task
_SNAPSHOT: ContextVar[Connection | None] = ContextVar("outlay_pg_snapshot", default=None)


def described(dsn: str) -> str:
    """Where a DSN points, for error messages: never its password."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(an unreadable PostgreSQL DSN)"
    host = info.get("host") or info.get("hostaddr") or "localhost"
    port = info.get("port") or 5432
    return f"postgresql://{host}:{port}/{info.get('dbname') or ''}"


def _connect_options(dsn: str) -> dict[str, Any]:
    options: dict[str, Any] = {"autocommit": True, "application_name": "outlay"}
    with contextlib.suppress(psycopg.Error):
        if "connect_timeout" not in conninfo_to_dict(dsn):
            options["connect_timeout"] = CONNECT_TIMEOUT_S
    return options


async def connect(dsn: str) -> psycopg.AsyncConnection[TupleRow]:
    """One autocommit connection outside the pool (migrations)."""
    return await psycopg.AsyncConnection.connect(dsn, **_connect_options(dsn))


@contextlib.contextmanager
def state_errors(doing: str) -> Iterator[None]:
    """Turn driver and pool errors (psycopg_pool's errors are psycopg.Error too) raised
    inside into StateError, saying what was being done; and a value the driver cannot
    encode (a string with a lone surrogate: psycopg raises the codec's error)."""
    try:
        yield
    except (psycopg.Error, UnicodeEncodeError) as exc:
        raise StateError(f"{doing}: {exc}".rstrip()) from exc


async def checked(conn: Connection) -> None:
    """The pool's check of a connection before it hands it out. One that has something to
    read after sitting idle (a server that stopped or restarted closed it, or said why) is
    checked with a query, and replaced if that fails; one with nothing to read is handed
    out without that round trip, which every flush of the ledger used to pay."""
    if conn.closed or conn.broken or _readable(conn.pgconn.socket):
        await AsyncConnectionPool.check_connection(conn)


def _readable(fd: int) -> bool:
    if not hasattr(select, "poll"):  # Windows: always checked with the query
        return True
    poller = select.poll()  # not select(): a worker's descriptors may pass FD_SETSIZE
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class Pooled:
    """A connection pool to one database, and the clock the store reads time from."""

    def __init__(
        self, dsn: str, *, clock: Callable[[], int], min_size: int = 1, max_size: int = 4,
        timeout_s: float = 5.0, reconnect_s: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.clock = clock
        self.min_size = min_size
        self.max_size = max_size
        self.timeout_s = timeout_s  # to connect, and to wait for a free connection
        # how long the pool retries a lost connection, backing off, before it gives up and
        # connects afresh on the next request: a bound on how long the store stays failed
        # after the server is back (psycopg_pool's default, 5 minutes, would back off to
        # minutes between attempts)
        self.reconnect_s = reconnect_s
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] | None = None
        self.where = described(dsn)
        self._failed = f"PostgreSQL at {self.where} failed"
        self.sealer = Sealer()  # webhook secrets: sealed when it has a key

    async def open_pool(self) -> None:
        if self._pool is not None:
            return
        pool = AsyncConnectionPool(
            self.dsn, min_size=self.min_size, max_size=self.max_size, open=False,
            kwargs=_connect_options(self.dsn), timeout=self.timeout_s, name="outlay",
            reconnect_timeout=self.reconnect_s,
            # a connection broken by a server restart is replaced before it is handed out
            check=checked,
        )
        try:
            with state_errors(f"cannot connect to PostgreSQL at {self.where}"):
                await pool.open(wait=True, timeout=self.timeout_s)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @property
    def pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]:
        if self._pool is None:
            raise StateError("the PostgreSQL store is not open")
        return self._pool

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[Cursor]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with state_errors(self._failed):
            async with self.pool.connection() as conn, conn.transaction(), \
                    conn.cursor() as cur:
                yield cur

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        """Inside the block, this task's reads (fetchall, fetchone) all see one snapshot of
        the database, one read-only REPEATABLE READ transaction: sums and rows read one
        after the other agree, whatever other writers commit meanwhile."""
        with state_errors(self._failed):
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, "
                                   "READ ONLY")
                token = _SNAPSHOT.set(conn)
                try:
                    yield
                finally:
                    _SNAPSHOT.reset(token)

    async def fetchall(self, query: str, args: Any = ()) -> list[Row]:
        """A read of one statement, outside any transaction of ours (but a snapshot's)."""
        with state_errors(self._failed):
            async with self._reading() as conn:
                cur = await conn.execute(query, args)
                return await cur.fetchall()

    async def fetchone(self, query: str, args: Any = ()) -> Row | None:
        with state_errors(self._failed):
            async with self._reading() as conn:
                cur = await conn.execute(query, args)
                return await cur.fetchone()

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[Connection]:
        conn = _SNAPSHOT.get()
        if conn is not None:
            yield conn
            return
        async with self.pool.connection() as pooled:
            yield pooled

    async def execute(self, query: str, args: Any = ()) -> int:
        """A write of one statement, its own transaction; returns the rows it touched."""
        with state_errors(self._failed):
            async with self.pool.connection() as conn:
                cur = await conn.execute(query, args)
                return cur.rowcount
