"""Fixtures every test package can use: the throwaway database servers (tests/servers/)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.postgres import PostgresServer
from tests.servers.redis import RedisClusterServers, RedisServer

# -- PostgreSQL -------------------------------------------------------------------------------
# One server for the whole session; every test that asks gets a fresh, empty database of its
# own in it, dropped afterwards.


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    dsn = postgres_server.new_database()
    yield dsn
    postgres_server.drop_database(dsn)

# -- Redis ------------------------------------------------------------------------------------
# One server for the whole session, started by the first test that asks for it; each test gets
# a tenant of its own in it (a `?tenant=` on the URL), so no test sees another's keys and none
# has to flush. Tests that restart or kill Redis take a dedicated server instead.


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """redis://127.0.0.1:P/0?tenant=t_<hex>: the session server, under a prefix of its own."""
    return f"{redis_server.url}?tenant=t_{secrets.token_hex(8)}"


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone, to stop, kill or restart; stopped afterwards."""
    with RedisServer(tmp_path / "own-redis") as server:
        yield server



@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A three-node Redis Cluster for the whole session, started by the first test asking."""
    with RedisClusterServers(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterServers) -> str:
    """The cluster, a tenant of this test's own: redis://…?tenant=t_<hex>&cluster=true."""
    return f"{redis_cluster.url}?tenant=t_{secrets.token_hex(8)}&cluster=true"
