"""The throwaway redis-server the tests run against: it answers, restarts on its port empty
or with its data, survives a kill -9 of its own, and leaves no process behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from .redis import RedisServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as started:
        yield started


def client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5)


def test_answers_on_loopback_and_not_on_6379(server: RedisServer) -> None:
    assert server.running
    assert server.port != 6379
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    with client(server) as r:
        assert r.ping()
        r.set("greeting", "hello")
        assert r.get("greeting") == b"hello"
        assert r.config_get("bind") == {"bind": "127.0.0.1"}
        assert r.config_get("save") == {"save": ""}


def test_restart_flushes_and_keeps_the_port(server: RedisServer) -> None:
    port = server.port
    with client(server) as r:
        r.set("k", "v")
    server.restart()
    assert server.port == port
    with client(server) as r:
        assert r.get("k") is None


def test_restart_without_flush_keeps_the_keys(server: RedisServer) -> None:
    port = server.port
    with client(server) as r:
        r.set("k", "v")
    server.restart(flush=False)
    assert server.port == port
    with client(server) as r:
        assert r.get("k") == b"v"
    # a later flushing restart does not bring back the dump
    server.restart()
    with client(server) as r:
        assert r.get("k") is None


def test_starts_again_after_kill(server: RedisServer) -> None:
    pid = pid_of(server)
    server.kill()
    assert not server.running
    assert not alive(pid)
    with pytest.raises(redis.ConnectionError), client(server) as r:
        r.ping()
    server.start()
    with client(server) as r:
        assert r.ping()
        assert r.dbsize() == 0


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    pid = pid_of(server)
    server.stop()
    assert not server.running
    assert not alive(pid)
    server.stop()  # twice is fine


def test_flushall_empties_every_database(server: RedisServer) -> None:
    with client(server) as r:
        r.set("k", "v")
    server.flushall()
    with client(server) as r:
        assert r.dbsize() == 0


def test_two_servers_get_different_ports(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "a") as a, RedisServer(tmp_path / "b") as b:
        assert a.port != b.port
        with client(a) as ra, client(b) as rb:
            ra.set("only-in-a", 1)
            assert rb.get("only-in-a") is None


def test_missing_redis_server_fails_with_a_clear_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="redis-server is not on PATH"):
        RedisServer(tmp_path).start()


def test_redis_url_fixture_names_a_tenant_of_the_session_server(
        redis_server: RedisServer, redis_url: str) -> None:
    assert redis_url.startswith(f"{redis_server.url}?tenant=t_")
    assert len(redis_url.rpartition("=t_")[2]) >= 8


def test_own_redis_server_is_a_dedicated_running_server(
        redis_server: RedisServer, own_redis_server: RedisServer) -> None:
    assert own_redis_server.running
    assert own_redis_server.port != redis_server.port


def pid_of(server: RedisServer) -> int:
    with client(server) as r:
        pid: int = r.info("server")["process_id"]
        return pid


def alive(pid: int) -> bool:
    # stop() and kill() reap the process, so its pid is gone at once
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_paused_server_answers_nothing_until_resumed(server: RedisServer) -> None:
    server.pause()
    try:
        with redis.Redis.from_url(server.url, socket_timeout=0.2) as r, \
                pytest.raises(redis.TimeoutError):
            r.ping()
    finally:
        server.resume()
    with client(server) as r:
        assert r.ping()


def test_a_kill_after_save_comes_back_with_what_was_saved(server: RedisServer) -> None:
    with client(server) as r:
        r.set("saved", "1")
        server.save()
        r.set("after", "1")
    server.kill()
    server.start()
    with client(server) as r:
        assert (r.get("saved"), r.get("after")) == (b"1", None)


def test_a_paused_server_still_stops(server: RedisServer) -> None:
    server.pause()
    server.stop()
    assert not server.running
