"""Three `outlay serve` replicas on different ports sharing one Redis and one PostgreSQL, as
behind a load balancer: a hard cap holds under concurrent calls spread across them, a rate
limit admits exactly its limit, a replica killed mid-load or Redis restarted empty loses no
ledger row and resets no counter, a revocation on one replica is in force on the others at
once (and cuts its streams in flight there), a policy set on one applies on the others
at once, and PostgreSQL down for a moment loses no ledger row either."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.servers.postgres import PostgresServer
from tests.servers.redis import RedisServer

from .harness import EXACT_MODEL, EXACT_PRICES, EXACT_TOKENS, POOL_CONFIG, micros, unique
from .replicas import Replica, Replicas
from .traffic import Load, error_code, wait_until

pytestmark = pytest.mark.e2e

StartReplicas = Callable[..., Replicas]
N = 3
PER_CALL = EXACT_TOKENS * EXACT_PRICES[EXACT_MODEL]["output"]  # micro-USD; reserved == cost
EXACT_BODY = {"model": EXACT_MODEL, "max_tokens": EXACT_TOKENS,
              "messages": [{"role": "user", "content": "hi"}]}
SMALL_BODY = {"model": "gpt-4o-mini", "max_tokens": 5,
              "messages": [{"role": "user", "content": "hi"}]}
# calls under load last long enough that some are always in flight
LOAD_CONFIG: dict[str, Any] = {"simulated": {"latency_ms": 300}, "prices": EXACT_PRICES}
LANES = 18  # 6 per replica
STAGGER_S = 0.3 / LANES
REAP_TIMEOUT_S = 15.0  # the reaper charges reservations of workers silent for 5 s
LEDGER_TIMEOUT_S = 10.0


def nothing_reserved(replicas: Replicas, scope: str) -> None:
    """Wait until every replica shows nothing reserved for `scope`; on a timeout, report the
    counters and the ledger rows that are not settled."""
    def detail() -> object:
        budgets = {r.name: r.budget(scope) for r in replicas}
        unsettled = [e for e in replicas[0].audit(scope)
                     if e["decision"] == "allowed" and e["settlement"] != "settled"]
        return {"budgets": budgets, "rows not settled": unsettled}

    wait_until(lambda: all(micros(r.budget(scope)["reserved_usd"]) == 0 for r in replicas),
               REAP_TIMEOUT_S, "nothing left reserved", detail)


def hard_cap(usd: str) -> dict[str, Any]:
    return {"budgets": [{"usd": usd, "period": "day", "mode": "hard"}]}


async def _spread(urls: list[str], key: str, body: dict, count: int) -> list[httpx.Response]:
    """`count` calls started at once, round-robin over `urls`, each on its own connection."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=60,
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        return await asyncio.gather(*(
            http.post(f"{urls[n % len(urls)]}/v1/chat/completions", json=body)
            for n in range(count)))


def spread(replicas: Replicas, key: str, body: dict, count: int) -> list[httpx.Response]:
    return asyncio.run(_spread(replicas.urls, key, body, count))


def settled_ledger(replica: Replica, scope: str, admitted: int) -> list[dict[str, Any]]:
    """The audit of `scope` once it holds `admitted` allowed rows, none pending (other
    replicas' rows reach PostgreSQL within a flush interval)."""
    seen: list[list[dict[str, Any]]] = []

    def complete() -> bool:
        seen.append(replica.audit(scope))
        allowed = [e for e in seen[-1] if e["decision"] == "allowed"]
        return len(allowed) >= admitted and all(e["settlement"] != "pending" for e in allowed)

    wait_until(complete, LEDGER_TIMEOUT_S, f"{admitted} settled ledger rows of {scope}")
    assert len(seen[-1]) < 1000, "the audit is truncated"
    return seen[-1]


def hammering(urls: list[str], key: str) -> Load:
    """LANES lanes over the replicas, sending calls back to back (a moment apart after a
    refusal): some are always in flight."""
    return Load(urls, key, EXACT_BODY, lanes=LANES, stagger_s=STAGGER_S, pace_s=0.0,
                backoff_s=0.02, timeout_s=10)


def check_ledger_matches(replicas: Replicas, scope: str, load: Load, cap: int, *,
                         answered_then_killed: bool = False) -> int:
    """Every replica's counters settled, equal to the ledger, at the cap to the last whole
    call; every 200 the clients saw has its allowed, settled row; calls cut short are
    charged in full. With `answered_then_killed` a 200 may instead be charged in full as
    `unsettled`: its replica was killed after answering and before its settlement landed
    (a settlement follows the answer, contract §3.7), and a call its replica decided but was
    killed before sending is voided (§3.7 too). Returns the spend."""
    budgets = [replica.budget(scope) for replica in replicas]
    spent = micros(budgets[0]["spent_usd"])
    assert [(micros(b["spent_usd"]), micros(b["reserved_usd"])) for b in budgets] == [
        (spent, 0)] * len(replicas)
    assert spent <= cap, f"spent {spent} micro-USD over a {cap} cap"
    assert cap - spent < PER_CALL, f"spent {spent}: the cap {cap} was not reached"

    entries = settled_ledger(replicas[0], scope, len(load.ok))
    assert not [e for e in entries if e["settlement"] == "pending"]
    assert sum(micros(e["cost_usd"]) for e in entries) == spent
    by_id = {e["request_id"]: e for e in entries}
    missing = sorted(set(load.ok) - set(by_id))
    assert not missing, f"200s without a ledger row: {missing}"
    for request_id, cost in load.ok.items():
        entry = by_id[request_id]
        if answered_then_killed and entry["settlement"] == "unsettled":
            assert micros(entry["cost_usd"]) == micros(entry["reserved_usd"]) == PER_CALL, entry
            continue
        assert (entry["decision"], entry["status"], entry["settlement"]) == (
            "allowed", 200, "settled"), entry
        assert micros(entry["cost_usd"]) == cost
    for entry in entries:
        if entry["decision"] == "allowed" and entry["request_id"] not in load.ok:
            if entry["settlement"] == "void" and (answered_then_killed
                                                  or entry["status"] == 503):
                # its replica was killed after the decision and before marking it forwarded,
                # or the store failed as it was being marked (answered 503
                # enforcement_unavailable): never sent, so voided (contract §3.7)
                assert micros(entry["cost_usd"]) == 0, str(entry)
                continue
            # cut short (a killed replica) or its client gone: charged in full
            assert micros(entry["cost_usd"]) == micros(entry["reserved_usd"]) == PER_CALL, \
                str(entry)
        if entry["decision"] == "refused":
            assert micros(entry["cost_usd"]) == 0, entry
    return spent


# -- 1. a hard cap ---------------------------------------------------------------------------

def test_hard_cap_holds_across_replicas_every_time(
        start_replicas: StartReplicas, redis_url: str, postgres_dsn: str) -> None:
    replicas = start_replicas(N, state_url=redis_url, database=postgres_dsn,
                              config_doc=POOL_CONFIG)
    cap = 10_000  # $0.01: 41 calls of 240 micro-USD
    for round_ in range(2):
        agent = unique(f"replica-cap-{round_}")
        scope = f"agent:{agent}"
        replicas[round_ % N].set_policy(scope, hard_cap("0.01"))
        key = replicas[(round_ + 1) % N].mint_key(agent)["key"]

        answers = spread(replicas, key, EXACT_BODY, 300)

        statuses = Counter(a.status_code for a in answers)
        assert set(statuses) == {200, 402}, sorted(
            {a.text for a in answers if a.status_code not in (200, 402)})
        for refused in (a for a in answers if a.status_code == 402):
            assert error_code(refused) == "budget_exceeded"
        ok = [a for a in answers if a.status_code == 200]
        # a third of them went to each replica
        assert Counter(str(a.url).split("/v1/")[0] for a in answers) == dict.fromkeys(
            replicas.urls, 300 // N)
        assert len(ok) == cap // PER_CALL, statuses

        for replica in replicas:
            budget = replica.budget(scope)
            assert micros(budget["reserved_usd"]) == 0, replica.name
            assert micros(budget["spent_usd"]) == len(ok) * PER_CALL, replica.name
        spent = len(ok) * PER_CALL
        assert sum(micros(a.headers["x-outlay-cost-usd"]) for a in ok) == spent

        entries = settled_ledger(replicas[round_ % N], scope, len(ok))
        assert len(entries) == 300
        assert sum(micros(e["cost_usd"]) for e in entries) == spent
        allowed = [e for e in entries if e["decision"] == "allowed"]
        assert {e["request_id"] for e in allowed} == {
            a.headers["x-outlay-request-id"] for a in ok}
        assert {(e["status"], e["settlement"]) for e in allowed} == {(200, "settled")}
        assert {(e["status"], e["code"]) for e in entries if e["decision"] == "refused"} == {
            (402, "budget_exceeded")}


# -- 2. a rate limit -------------------------------------------------------------------------

def test_rate_limit_is_exact_across_replicas(
        start_replicas: StartReplicas, redis_url: str, postgres_dsn: str) -> None:
    # two worker processes per replica: `--workers N` on each host, six deciders in all
    replicas = start_replicas(N, state_url=redis_url, database=postgres_dsn,
                              config_doc={"simulated": {"latency_ms": 50}}, workers=2)
    minted = replicas[2].mint_key(unique("replica-rpm"), policy={"rpm": 30})

    answers = spread(replicas, minted["key"], SMALL_BODY, 60)

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 30, 429: 30}, statuses
    for limited in (a for a in answers if a.status_code == 429):
        assert error_code(limited) == "rate_limit_exceeded"
        assert limited.headers["retry-after"].isdigit()
    scope = f"key:{minted['id']}"
    for replica in replicas:
        (window,) = replica.usage(scope)["windows"]
        assert (window["name"], window["limit"], window["used"]) == ("rpm", 30, 30)
    entries = settled_ledger(replicas[0], scope, 30)
    assert Counter(e["decision"] for e in entries) == {"allowed": 30, "refused": 30}


# -- 3. a replica killed ---------------------------------------------------------------------

def test_replica_killed_mid_load_loses_nothing(
        start_replicas: StartReplicas, redis_url: str, postgres_dsn: str) -> None:
    replicas = start_replicas(N, state_url=redis_url, database=postgres_dsn,
                              config_doc=LOAD_CONFIG)
    agent = unique("replica-crash")
    scope = f"agent:{agent}"
    # $0.12: some 500 calls, over ten seconds of load, so that the cap is reached after the
    # killed replica is back even when its restart takes seconds on a loaded machine
    cap = 120_000
    replicas[0].set_policy(scope, hard_cap("0.12"))
    key = replicas[1].mint_key(agent)["key"]

    with hammering(replicas.urls, key) as load:
        wait_until(lambda: len(load.ok) >= 20, 15, "calls to succeed")
        snapshots: list[dict[str, Any]] = []

        def holding() -> bool:
            snapshots.append(replicas[0].budget(scope))
            return micros(snapshots[-1]["reserved_usd"]) > 0

        wait_until(holding, 5, "calls in flight")
        replicas.kill9(1)
        before = micros(snapshots[-1]["spent_usd"])
        time.sleep(0.5)
        replicas.start(1)
        restarted = time.monotonic()
        wait_until(lambda: load.statuses[402] >= 20 and load.last_ok > restarted, 30,
                   "the cap to be reached after the restart",
                   lambda: (load.statuses, load.codes, len(load.lost)))
    assert not load.unexpected(), load.unexpected()[:10]
    assert load.lost, "no call was cut by the kill"
    assert set(load.statuses) <= {200, 402}, load.statuses

    nothing_reserved(replicas, scope)  # the reaper charges the killed replica's calls
    spent = check_ledger_matches(replicas, scope, load, cap, answered_then_killed=True)
    assert spent >= before, "the counter went back after the kill"
    entries = replicas[1].audit(scope)
    unsettled = [e for e in entries if e["settlement"] == "unsettled"]
    answered = [e for e in unsettled if e["request_id"] in load.ok]
    assert 1 <= len(unsettled) <= len(load.lost) + len(answered), (len(unsettled),
                                                                  len(load.lost))
    assert all(e["decision"] == "allowed" for e in unsettled)
    # a call the kill caught between its reservation and its forwarded mark was never sent:
    # voided (contract §3.7), and never answered
    kinds = {e["settlement"] for e in entries if e["decision"] == "allowed"}
    assert {"settled", "unsettled"} <= kinds <= {"settled", "unsettled", "void"}, kinds
    voided = [e["request_id"] for e in entries
              if e["decision"] == "allowed" and e["settlement"] == "void"]
    assert not set(voided) & set(load.ok), voided


# -- 4. Redis restarted empty ----------------------------------------------------------------

def test_redis_restarted_empty_mid_load_fails_closed_then_resumes(
        start_replicas: StartReplicas, own_redis_server: RedisServer,
        postgres_dsn: str) -> None:
    replicas = start_replicas(N, state_url=f"{own_redis_server.url}?tenant=t_flush",
                              database=postgres_dsn, config_doc=LOAD_CONFIG)
    agent = unique("replica-flush")
    scope = f"agent:{agent}"
    cap = 50_000
    replicas[0].set_policy(scope, hard_cap("0.05"))
    key = replicas[2].mint_key(agent)["key"]

    with hammering(replicas.urls, key) as load:
        wait_until(lambda: len(load.ok) >= 30, 15, "calls to succeed")
        before = micros(replicas[0].budget(scope)["spent_usd"])
        own_redis_server.stop()
        wait_until(lambda: load.statuses[503] >= 5, 10, "calls refused while Redis is down")
        time.sleep(0.5)
        own_redis_server.restart(flush=True)  # back on its port, empty
        back = time.monotonic()
        wait_until(lambda: load.last_ok > back, 20, "service to resume after the flush")
        resumed = time.monotonic() - back
        wait_until(lambda: load.statuses[402] >= 20, 30, "the cap to be reached")
    assert not load.unexpected(), load.unexpected()[:10]
    assert set(load.statuses) <= {200, 402, 503}, load.statuses
    assert load.codes["enforcement_unavailable"] >= 5, load.codes
    assert set(load.codes) <= {"enforcement_unavailable", "budget_exceeded"}, load.codes
    assert resumed < 10, f"service took {resumed:.1f} s to resume"

    nothing_reserved(replicas, scope)
    spent = check_ledger_matches(replicas, scope, load, cap)
    assert spent >= before + PER_CALL, "the spend before the flush was reset"
    entries = replicas[0].audit(scope)
    assert not [e for e in entries if e["settlement"] == "pending"]


# -- 5. a revocation -------------------------------------------------------------------------

def test_revoke_on_one_replica_is_refused_by_the_others_within_a_second(
        start_replicas: StartReplicas, redis_url: str, postgres_dsn: str) -> None:
    replicas = start_replicas(N, state_url=redis_url, database=postgres_dsn,
                              config_doc={"simulated": {"latency_ms": 20}})
    minted = replicas[0].mint_key(unique("replica-revoke"))
    headers = {"Authorization": f"Bearer {minted['key']}"}
    with httpx.Client(timeout=15, headers=headers) as http:
        for replica in replicas:  # every replica has the key cached
            answer = http.post(f"{replica.url}/v1/chat/completions", json=SMALL_BODY)
            assert answer.status_code == 200, f"{replica.name}: {answer.text}"

        replicas[0].revoke(minted["id"])
        revoked_at = time.monotonic()
        refused_after: dict[str, float] = {}
        while len(refused_after) < 2 and time.monotonic() < revoked_at + 1.0:
            for replica in replicas.members[1:]:
                if replica.name in refused_after:
                    continue
                answer = http.post(f"{replica.url}/v1/chat/completions", json=SMALL_BODY)
                if answer.status_code == 401:
                    assert error_code(answer) == "key_revoked", answer.text
                    refused_after[replica.name] = time.monotonic() - revoked_at
                else:
                    assert answer.status_code == 200, answer.text
        assert set(refused_after) == {replicas[1].name, replicas[2].name}, (
            f"still served after 1 s: {refused_after}")
        # and for good: every replica refuses it
        for replica in replicas:
            answer = http.post(f"{replica.url}/v1/chat/completions", json=SMALL_BODY)
            assert (answer.status_code, error_code(answer)) == (401, "key_revoked")


# A slow provider: the first chunk after 2 s, then one every 100 ms for about 2.7 s more.
SLOW_CONFIG: dict[str, Any] = {"simulated": {"latency_ms": 2000}}
CUT_WITHIN_S = 1.0


def test_a_stream_in_flight_on_a_revoked_key_is_cut_on_another_replica(
        start_replicas: StartReplicas, redis_url: str, postgres_dsn: str) -> None:
    replicas = start_replicas(N, state_url=redis_url, database=postgres_dsn,
                              config_doc=SLOW_CONFIG)
    minted = replicas[0].mint_key(unique("replica-cut"), policy=hard_cap("1"))
    headers = {"Authorization": f"Bearer {minted['key']}"}
    # no max_tokens: the simulated reply's full length, some 27 chunks
    body = {"model": SMALL_BODY["model"], "messages": SMALL_BODY["messages"], "stream": True}
    lines: list[str] = []
    broken: list[httpx.TransportError] = []
    revoked_at: list[float] = []
    with httpx.Client(timeout=15, headers=headers) as http:
        # replica 2 has the key cached before the revoke
        answer = http.post(f"{replicas[2].url}/v1/chat/completions", json=SMALL_BODY)
        assert answer.status_code == 200, answer.text

        started = time.monotonic()
        with http.stream("POST", f"{replicas[1].url}/v1/chat/completions",
                         json=body) as stream:
            assert stream.status_code == 200, stream.read()
            try:
                for line in stream.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    lines.append(line)
                    if len(lines) == 2:  # the stream is flowing: revoke on another replica
                        replicas[0].revoke(minted["id"])
                        revoked_at.append(time.monotonic())
            except httpx.TransportError as exc:  # the connection closed mid-body: cut
                broken.append(exc)
        ended_at = time.monotonic()

        assert revoked_at, f"the stream ended before its second chunk: {lines}"
        cut_after = ended_at - revoked_at[0]
        assert "data: [DONE]" not in lines, (
            f"the stream ran to its end, {ended_at - started:.1f} s, {len(lines)} chunks")
        assert broken or any('"error"' in line for line in lines), lines[-3:]
        assert cut_after <= CUT_WITHIN_S, f"cut {cut_after:.2f} s after the revoke"

        # a new call on the third replica is refused
        answer = http.post(f"{replicas[2].url}/v1/chat/completions", json=SMALL_BODY)
        assert (answer.status_code, error_code(answer)) == (401, "key_revoked"), answer.text

    # the cut stream is charged in full, as on a single host
    scope = f"key:{minted['id']}"
    entries = settled_ledger(replicas[0], scope, 2)
    cut = [e for e in entries if e["settlement"] == "unsettled"]
    assert len(cut) == 1, entries
    assert micros(cut[0]["cost_usd"]) == micros(cut[0]["reserved_usd"]) > 0
    nothing_reserved(replicas, scope)
    spent = sum(micros(e["cost_usd"]) for e in entries)
    assert [micros(r.budget(scope)["spent_usd"]) for r in replicas] == [spent] * N


# -- 6. a policy change ----------------------------------------------------------------------

def test_a_policy_change_on_one_replica_applies_on_the_others_at_once(
        start_replicas: StartReplicas, redis_url: str, postgres_dsn: str) -> None:
    replicas = start_replicas(N, state_url=redis_url, database=postgres_dsn,
                              config_doc={"simulated": {"latency_ms": 20}})
    minted = replicas[0].mint_key(unique("replica-policy"))
    scope = f"key:{minted['id']}"
    others = replicas.members[1:]
    with httpx.Client(timeout=15, headers={"Authorization": f"Bearer {minted['key']}"}) as http:
        def call(replica: Replica) -> httpx.Response:
            return http.post(f"{replica.url}/v1/chat/completions", json=SMALL_BODY)

        for replica in others:  # no limits: served, and key and policies cached
            answer = call(replica)
            assert answer.status_code == 200, f"{replica.name}: {answer.text}"

        # an allow-list without the model: the very next calls are refused
        replicas[0].set_policy(scope, {"models": ["gpt-4o"]})
        for replica in others:
            answer = call(replica)
            assert (answer.status_code, error_code(answer)) == (403, "model_not_allowed"), (
                f"{replica.name}: {answer.status_code} {answer.text}")

        # widened again: the very next calls are served
        replicas[0].set_policy(scope, {"models": ["gpt-4o", "gpt-4o-mini"]})
        for replica in others:
            answer = call(replica)
            assert answer.status_code == 200, f"{replica.name}: {answer.text}"

        # a rate limit set on one replica counts from the next call on the others
        replicas[0].set_policy(scope, {"rpm": 2})
        statuses = [call(replica).status_code for replica in (*others, *others)]
        assert statuses == [200, 200, 429, 429], statuses

        # and removed, it no longer applies anywhere
        answer = replicas[0].admin.delete(f"/admin/v1/policies/{scope}")
        assert answer.status_code in (200, 204), answer.text
        for replica in others:
            answer = call(replica)
            assert answer.status_code == 200, f"{replica.name}: {answer.text}"


# -- 7. PostgreSQL down for a moment ---------------------------------------------------------

def test_postgres_outage_loses_no_ledger_row(
        start_replicas: StartReplicas, redis_url: str, postgres_server: PostgresServer,
        postgres_dsn: str) -> None:
    replicas = start_replicas(N, state_url=redis_url, database=postgres_dsn,
                              config_doc={"simulated": {"latency_ms": 20},
                                          "prices": EXACT_PRICES})
    agent = unique("replica-pg-down")
    scope = f"agent:{agent}"
    replicas[0].set_policy(scope, hard_cap("1"))
    key = replicas[0].mint_key(agent)["key"]
    seen: dict[str, int] = {}  # request id -> cost, of every call
    during: list[str] = []  # those made while PostgreSQL was down
    with httpx.Client(timeout=15, headers={"Authorization": f"Bearer {key}"}) as http:
        def call(replica: Replica) -> str:
            answer = http.post(f"{replica.url}/v1/chat/completions", json=EXACT_BODY)
            assert answer.status_code == 200, f"{replica.name}: {answer.text}"
            request_id = answer.headers["x-outlay-request-id"]
            seen[request_id] = micros(answer.headers["x-outlay-cost-usd"])
            return request_id

        for replica in replicas:  # the key is cached everywhere
            call(replica)
        postgres_server.stop(remove=False)
        try:
            during += [call(replicas[n % N]) for n in range(30)]
        finally:
            postgres_server.start()

    polls = iter(range(1_000_000))

    def all_written() -> bool:
        answer = replicas[next(polls) % N].admin.get(
            "/admin/v1/audit", params={"scope": scope, "limit": 1000})
        if answer.status_code != 200:  # 503 until the replica reconnects
            return False
        entries = answer.json()["entries"]
        return {e["request_id"] for e in entries} >= set(seen) and not [
            e for e in entries if e["settlement"] == "pending"]

    wait_until(all_written, 20, "the calls made during the outage to reach the ledger")
    assert len(during) == 30
    for replica in replicas:
        entries = {e["request_id"]: e for e in replica.audit(scope)}
        assert len(entries) == len(seen), replica.name
        for request_id, cost in seen.items():
            entry = entries[request_id]
            assert (entry["decision"], entry["status"], entry["settlement"]) == (
                "allowed", 200, "settled"), entry
            assert micros(entry["cost_usd"]) == cost
        budget = replica.budget(scope)
        assert micros(budget["spent_usd"]) == sum(seen.values()), replica.name
        assert micros(budget["reserved_usd"]) == 0, replica.name
