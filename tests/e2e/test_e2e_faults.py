"""Faults of the stores under paced load on two replicas invent or lose no money: Redis
killed and restarted from a snapshot taken seconds before, or from its append-only file;
Redis paused (SIGSTOP) longer than the socket timeout; PostgreSQL stopped, or hung; a
replica killed while PostgreSQL is down; a replica killed between its decisions and their
sending (its calls voided, never charged). After each, the provider's served calls, the
ledger's charged rows and the counters agree, no cap is passed, nothing is left held or
pending, and no call answered 503 was served or charged. How long each took to recover is
reported in the run's summary (not asserted: it depends on the machine)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.servers.postgres import PostgresServer
from tests.servers.redis import RedisServer

from .conftest import Recovery
from .faults import (
    PER_CALL,
    Provider,
    check_books,
    ledger,
    paced_load,
    replica_config,
    run_provider,
    settled_down,
    worker_pid,
)
from .harness import EXACT_MODEL, EXACT_TOKENS, unique
from .replicas import Replicas
from .traffic import Load, wait_until

pytestmark = pytest.mark.e2e

StartReplicas = Callable[..., Replicas]
CAP_CALLS = 150  # reached a few seconds after a Redis fault, so stale counters would pass it
RESUME_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    yield from run_provider()


@dataclass
class Installation:
    replicas: Replicas
    agent: str
    key: str
    cap: int

    @property
    def scope(self) -> str:
        return f"agent:{self.agent}"


def install(start_replicas: StartReplicas, provider: Provider, state_url: str, dsn: str,
            cap_calls: int | None = None) -> Installation:
    provider.served.clear()  # the provider serves one test at a time
    replicas = start_replicas(2, state_url=state_url, database=dsn,
                              config_doc=replica_config(provider))
    agent = unique("fault")
    cap = PER_CALL * (cap_calls or 100_000)
    replicas[0].set_policy(f"agent:{agent}", {"budgets": [
        {"usd": f"{cap / 1_000_000:.6f}", "period": "day", "mode": "hard"}]})
    return Installation(replicas, agent, replicas[1].mint_key(agent)["key"], cap)


def balanced(inst: Installation, provider: Provider, load: Load, dsn: str, *,
             reached: bool, unsettled_from: set[int] | None = None) -> float:
    """Wait for the books to settle, check them; returns how long settling took."""
    assert set(load.statuses) <= {200, 402, 503}, load.statuses
    assert set(load.codes) <= {"budget_exceeded", "enforcement_unavailable"}, load.codes
    took = settled_down(inst.replicas, inst.scope, dsn, inst.agent)
    spent = check_books(inst.replicas, provider, load, inst.scope, dsn, inst.agent, inst.cap,
                        unsettled_from=unsettled_from)
    if reached:
        assert inst.cap - spent < PER_CALL, f"spent {spent}: the cap {inst.cap} not reached"
    return took


def unavailable(load: Load) -> str:
    n, seconds = load.refused_unavailable()
    return f"{n} calls answered 503 over {seconds:.1f} s"


def served_again(load: Load, moment: float) -> float:
    wait_until(lambda: load.served_again(moment) is not None, RESUME_TIMEOUT_S,
               "a call sent after the fault to be served")
    again = load.served_again(moment)
    assert again is not None
    return again


def redis_forgets(start_replicas: StartReplicas, provider: Provider, server: RedisServer,
                  dsn: str, restart: Callable[[], None]) -> tuple[Load, float, Installation]:
    """Load until 40 calls after the last save, kill Redis, `restart` it: the state it
    loads is stale. Then load until the cap is reached."""
    inst = install(start_replicas, provider, f"{server.url}?tenant=t_forget", dsn, CAP_CALLS)
    with paced_load(inst.replicas.urls, inst.key) as load:
        wait_until(lambda: load.count(200) >= 20, 15, "calls to be served")
        saved = load.count(200)
        server.save()
        wait_until(lambda: load.count(200) >= saved + 40, 15, "calls after the snapshot")
        server.kill()
        time.sleep(0.5)
        restart()
        back = time.monotonic()
        again = served_again(load, back)
        wait_until(lambda: load.count(402) >= 20, 30, "the cap to be reached")
    return load, again, inst


def test_redis_restored_from_a_snapshot_seconds_old(
        start_replicas: StartReplicas, provider: Provider, own_redis_server: RedisServer,
        postgres_dsn: str, recovery: Recovery) -> None:
    load, again, inst = redis_forgets(start_replicas, provider, own_redis_server,
                                      postgres_dsn, own_redis_server.start)
    took = balanced(inst, provider, load, postgres_dsn, reached=True)
    recovery("Redis killed, restarted from a snapshot 40 calls old",
             f"served again {again:.1f} s after Redis was back (counters rebuilt); "
             f"{unavailable(load)}; books settled {took:.1f} s after the load")


def test_redis_killed_with_its_append_only_file(
        start_replicas: StartReplicas, provider: Provider, postgres_dsn: str,
        tmp_path: Path, recovery: Recovery) -> None:
    with RedisServer(tmp_path / "aof", ("--appendonly", "yes", "--appendfsync",
                                        "everysec")) as server:
        load, again, inst = redis_forgets(start_replicas, provider, server, postgres_dsn,
                                          server.start)
        took = balanced(inst, provider, load, postgres_dsn, reached=True)
    recovery("Redis killed, restarted from its append-only file (fsync every second)",
             f"served again {again:.1f} s after Redis was back (counters rebuilt); "
             f"{unavailable(load)}; books settled {took:.1f} s after the load")


def test_redis_paused_longer_than_the_socket_timeout(
        start_replicas: StartReplicas, provider: Provider, own_redis_server: RedisServer,
        postgres_dsn: str, recovery: Recovery) -> None:
    inst = install(start_replicas, provider, f"{own_redis_server.url}?tenant=t_pause",
                   postgres_dsn)
    with paced_load(inst.replicas.urls, inst.key) as load:
        wait_until(lambda: load.count(200) >= 20, 15, "calls to be served")
        own_redis_server.pause()
        try:
            time.sleep(7.0)  # past the 2 s socket timeout and the 5 s heartbeat limit
        finally:
            own_redis_server.resume()
        back = time.monotonic()
        again = served_again(load, back)
        time.sleep(1.0)
    assert load.count(503) >= 2, load.statuses
    took = balanced(inst, provider, load, postgres_dsn, reached=False)
    recovery("Redis paused 7 s (SIGSTOP)",
             f"served again {again:.1f} s after it resumed; {unavailable(load)}, none "
             f"charged; no replica reaped; books settled {took:.1f} s after the load")


@pytest.mark.parametrize("how", ["stopped", "hung"])
def test_postgres_stopped_or_hung(
        start_replicas: StartReplicas, provider: Provider, redis_url: str,
        postgres_server: PostgresServer, postgres_dsn: str, recovery: Recovery,
        how: str) -> None:
    inst = install(start_replicas, provider, redis_url, postgres_dsn)
    with paced_load(inst.replicas.urls, inst.key) as load:
        wait_until(lambda: load.count(200) >= 20, 15, "calls to be served")
        during = load.count(200)
        if how == "stopped":
            postgres_server.stop(remove=False)
            try:
                time.sleep(3.0)
            finally:
                postgres_server.start()
        else:
            postgres_server.pause()
            try:
                time.sleep(4.0)
            finally:
                postgres_server.resume()
        served_while = load.count(200) - during
        time.sleep(0.5)
    took = balanced(inst, provider, load, postgres_dsn, reached=False)
    recovery(f"PostgreSQL {how} ({'3 s' if how == 'stopped' else '4 s, SIGSTOP'})",
             f"{served_while} calls served meanwhile; {unavailable(load)}; the ledger "
             f"caught up {took:.1f} s after the load")


def test_a_replica_killed_while_postgres_is_down(
        start_replicas: StartReplicas, provider: Provider, redis_url: str,
        postgres_server: PostgresServer, postgres_dsn: str, recovery: Recovery) -> None:
    inst = install(start_replicas, provider, redis_url, postgres_dsn)
    doomed = inst.replicas[1]
    assert doomed.proc is not None
    pids = set(doomed.worker_pids()) | {doomed.proc.pid}
    with paced_load(inst.replicas.urls, inst.key) as load:
        wait_until(lambda: load.count(200) >= 20, 15, "calls to be served")
        postgres_server.stop(remove=False)
        try:
            time.sleep(0.5)
            wait_until(lambda: load.in_flight[doomed.url] >= 2, 5, "calls in flight there")
            inst.replicas.kill9(1)  # with calls in flight, its ledger not yet written
            time.sleep(1.0)
        finally:
            postgres_server.start()
        time.sleep(1.0)
    assert load.lost, f"no call was cut by the kill: {load.statuses}"
    took = balanced(inst, provider, load, postgres_dsn, reached=False, unsettled_from=pids)
    recovery("a replica killed while PostgreSQL was down (1.5 s)",
             f"{len(load.lost)} calls cut; its calls in flight charged in full and its "
             f"ledger written by the other replica {took:.1f} s after the load")


PAUSE = "OUTLAY_TEST_PAUSE_BEFORE_FORWARD_S"  # tests only: decided, then held before sending
UNSENT = 3


def test_a_replica_killed_between_its_decisions_and_their_sending(
        start_replicas: StartReplicas, provider: Provider, redis_url: str,
        postgres_dsn: str, recovery: Recovery) -> None:
    """Calls decided on a replica (their reservations held) that dies before sending them
    are voided by the other replica's reaper, never charged; the books hold as after any
    fault, under load on the replica that lives."""
    inst = install(start_replicas, provider, redis_url, postgres_dsn)
    doomed = inst.replicas[1]
    doomed.env[PAUSE] = "60"
    inst.replicas.restart(1)
    assert doomed.proc is not None
    pids = set(doomed.worker_pids()) | {doomed.proc.pid}
    body = {"model": EXACT_MODEL, "max_tokens": EXACT_TOKENS,
            "messages": [{"role": "user", "content": "hi"}]}

    def unsent(n: int) -> None:  # answered never: the replica dies first
        with contextlib.suppress(httpx.TransportError):
            httpx.post(f"{doomed.url}/v1/chat/completions", timeout=30,
                       json={**body, "user": f"unsent-{n}"},
                       headers={"Authorization": f"Bearer {inst.key}"})

    def held_there() -> list[str]:
        return [r.request_id for r in ledger(postgres_dsn, inst.agent)
                if worker_pid(r.worker) in pids and r.settlement == "pending"]

    senders = [threading.Thread(target=unsent, args=(n,), daemon=True) for n in range(UNSENT)]
    with paced_load([inst.replicas[0].url], inst.key) as load:
        wait_until(lambda: load.count(200) >= 10, 15, "calls to be served")
        for sender in senders:
            sender.start()
        wait_until(lambda: len(held_there()) == UNSENT, 15, "the calls decided there",
                   held_there)
        held = held_there()
        inst.replicas.kill9(1)
        killed = time.monotonic()
        wait_until(lambda: not held_there(), 20, "the reaper to settle them", held_there)
        reaped = time.monotonic() - killed
    for sender in senders:
        sender.join(10)
    took = balanced(inst, provider, load, postgres_dsn, reached=False)
    voided = {r.request_id: r for r in ledger(postgres_dsn, inst.agent)
              if r.request_id in held}
    assert {(r.settlement, r.cost) for r in voided.values()} == {("void", 0)}, voided
    assert not [m for m in provider.served if m.startswith("unsent-")], provider.served
    recovery("a replica killed between its decisions and their sending",
             f"{UNSENT} calls decided there voided by the other replica {reaped:.1f} s "
             "after the kill (the reaper's 5 s); "
             f"books settled {took:.1f} s after the load")
