"""The replicated state backend: Redis holds the hot state (windows, budget counters, calls in
flight), PostgreSQL the durable truth (keys, policies, the ledger, approvals, the outbox).

Each decision is one Lua script (`lua/reserve.lua`) that checks every limit of every scope
and, only when nothing that blocks is breached, makes every write: all or nothing, on the
Redis server's clock. The script returns what it saw, and `decide` reads that same snapshot
to word the refusal, fill the headers and raise the events, exactly as the embedded store.
Policies and keys are cached per worker under a version that every admin write changes;
the script refuses to apply a decision made under an older version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import orjson
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from outlay.loops import cancelled
from outlay.policy.approvals import judge
from outlay.policy.decide import authenticate, decide, precheck
from outlay.policy.decision import (
    Admit,
    ApprovalNeed,
    Event,
    Grant,
    KeyInfo,
    Limits,
    call_scopes,
)
from outlay.policy.errors import (
    ApprovalMismatch,
    BudgetExceeded,
    BudgetHeld,
    OutlayError,
    RateHeld,
)
from outlay.policy.model import Policy
from outlay.policy.pacing import (
    Slot,
    WithSlot,
    endpoint_refused,
    held,
    paused,
    queue_wait,
)
from outlay.policy.tags import resolve, too_many_values, tracked
from outlay.state.base import (
    DOWNGRADED_CODE,
    Reservation,
    StateError,
    Ticket,
    refusal_figures,
    unpriced,
)
from outlay.state.clock import wall_ms
from outlay.state.downgrades import downgrade
from outlay.state.exposure import ExposureClaim, ObjectMoved
from outlay.state.fingerprints import Fingerprints
from outlay.state.postgres.durable import PostgresDurable
from outlay.state.redis.access import AccessDelegate
from outlay.state.redis.admin import RedisAdmin
from outlay.state.redis.announce import RedisAnnouncer
from outlay.state.redis.batch import UNSTORABLE, ScriptBatch, unstorable, unstorable_values
from outlay.state.redis.caches import RedisCaches, SharedReads
from outlay.state.redis.doubt import RedisDoubts
from outlay.state.redis.exposure import RedisExposure, exposure_scripts
from outlay.state.redis.forgot import RedisRecovery, fenced_connect
from outlay.state.redis.liveness import PAUSE_AFTER_MS, RedisLiveness, worker_name
from outlay.state.redis.pacing import Admitted, EndpointFull, RedisPacing
from outlay.state.redis.pacing import Retry as _Retry
from outlay.state.redis.plan import (
    GRANTED,
    Holder,
    Names,
    Plans,
    PolicyViews,
    check_args,
    loop_plan,
    loop_seen,
    tag_value_checks,
    views,
)
from outlay.state.redis.scripts import script_text
from outlay.state.redis.settle import RedisSettlement
from outlay.state.redis.wal import Wal, ledger_row
from outlay.state.retries import SettlementRetries
from outlay.state.sealing import Sealer

log = logging.getLogger("outlay.state")
MARKS_KEPT = 4096
# connections to Redis a worker may hold at once (redis-py's default, 100, failed the
# 101st call in flight); each Redis Cluster node gets as many
POOL_CONNECTIONS = 1024


class RedisStore(RedisSettlement, RedisAdmin, AccessDelegate, RedisRecovery, RedisDoubts,
                 RedisLiveness, RedisExposure, RedisPacing, RedisAnnouncer, RedisCaches):
    def __init__(
        self, url: str, *, database: str | None = None, tenant: str | None = None,
        clock: Callable[[], int] | None = None, lease_s: float = 900.0,
        rebuild_grace_s: float = 1.0, flush_interval_s: float = 0.02,
        pause_after_s: float = PAUSE_AFTER_MS / 1000, timeout_s: float = 2.0,
        approval_ttl_s: float = 3600.0, sealer: Sealer | None = None,
    ) -> None:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        database = database or query.pop("database", [None])[0]
        tenant = tenant or query.pop("tenant", ["default"])[0]
        # a Redis Cluster: every key of the tenant is in one slot, the client finds its node
        self.cluster = query.pop("cluster", ["false"])[0].lower() in ("1", "true", "yes")
        if not database:
            raise ValueError("a redis:// state needs a PostgreSQL database for the durable "
                             "records: set `database: postgresql://…` (OUTLAY_DATABASE)")
        self.url = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        self.names = Names(tenant or "default")
        self.durable = PostgresDurable(database, clock=self.clock)
        self.durable.sealer = sealer or Sealer()
        self._clock = clock
        self.lease_ms = int(lease_s * 1000)
        self.approval_ttl_ms = int(approval_ttl_s * 1000)
        self.rebuild_grace_s = rebuild_grace_s
        self.flush_interval_s = flush_interval_s
        self.pause_after_ms = int(pause_after_s * 1000)
        self.timeout_s = timeout_s  # Redis's answer, or a connection: then 503
        self.worker = worker_name()
        self._redis: Redis | None = None
        self._wal: Wal | None = None
        self._batch: ScriptBatch | None = None
        self._version: str | None = None
        self._policies: dict[str, Policy] = {}
        self._policy_views = PolicyViews()  # precheck's, under the policies above
        self._plans = Plans(self.names)  # the templates of the scripts' plans, likewise
        self._fingerprints = Fingerprints()  # of the requests a loop guard counts
        self._keys: dict[str, KeyInfo] = {}
        # the reads under way of the policies (after a change) and of keys by hash: calls
        # arriving meanwhile wait for them instead of making their own (a change made every
        # call in flight read every policy, a key's policy included, each on its own)
        self._loading: SharedReads[None] = SharedReads()
        self._reading: SharedReads[KeyInfo | None] = SharedReads()
        self._marks: OrderedDict[str, None] = OrderedDict()
        # settlements that met an unreachable Redis or a state being rebuilt
        self._retries = SettlementRetries(self._apply_settlement)
        self._settling: set[asyncio.Future[Any]] = set()  # queued settlements in flight
        self._doubtful: dict[str, None] = {}  # calls whose reservation's answer was lost
        self._voiding: asyncio.Task[None] | None = None
        self._rebuild_asked: asyncio.Task[None] | None = None  # by a settlement kept for it

    # -- plumbing ---------------------------------------------------------------------
    def clock(self) -> int:
        return self._clock() if self._clock is not None else wall_ms()

    async def open(self) -> None:
        if self._redis is not None:
            return
        await self.durable.open()
        options: dict[str, Any] = {"decode_responses": True, "socket_timeout": self.timeout_s,
                                   "socket_connect_timeout": self.timeout_s}
        if self.cluster:
            redis: Redis = RedisCluster.from_url(  # type: ignore[assignment]
                self.url, max_connections=POOL_CONNECTIONS, **options)
        else:
            # no retries: a script resent after a timeout could run twice, and the caller
            # is answered at once; every connection is fenced before its first command. Past
            # POOL_CONNECTIONS in use, a call waits for one (at most timeout_s), not fails.
            redis = Redis.from_pool(BlockingConnectionPool.from_url(
                self.url, max_connections=POOL_CONNECTIONS, timeout=self.timeout_s,
                health_check_interval=10, retry=Retry(NoBackoff(), 0),
                redis_connect_func=fenced_connect(self.names.meta), **options))
        self._redis = redis
        self._reserve_script = redis.register_script(script_text("reserve.lua"))
        # settle.lua wrapped: any settlement of a call on a vendor object counts it there
        exposure_reserve, exposure_settle = exposure_scripts()
        self._settle_script = redis.register_script(exposure_settle)
        self._exposure_reserve = redis.register_script(exposure_reserve)
        self._adopt_script = redis.register_script(script_text("adopt.lua"))
        self._renew_script = redis.register_script(script_text("renew.lua"))
        self._void_script = redis.register_script(script_text("void.lua"))
        self._forward_script = redis.register_script(script_text("forward.lua"))
        self._beat_script = redis.register_script(script_text("beat.lua"))
        self._now_script = redis.register_script(script_text("now.lua"))
        self._batch = ScriptBatch(redis, pipelined=not self.cluster)
        self._wal = Wal(redis, self.names.wal(self.worker), self.durable, self.flush_interval_s,
                        self._batch)
        try:
            await self._check_epoch()
            await self._ensure_ready()
            await self.heartbeat()
        except BaseException:
            await self.close()
            raise
        self._wal.start()

    async def close(self) -> None:
        redis, wal = self._redis, self._wal
        if redis is None:
            return
        await self._settled_so_far()
        await cancelled(self._voiding)
        with contextlib.suppress(StateError, RedisError, OSError):
            await self._after_outage()
        await self._retries.close()  # one last try, before the ledger's last write
        await cancelled(self._rebuild_asked)  # by a settlement, that last try's included
        with contextlib.suppress(StateError, RedisError, OSError):
            if wal is not None:
                await wal.stop()
                if not wal.backlog:
                    await redis.delete(self.names.wal(self.worker))
            await redis.zrem(self.names.workers, self.worker)
        self._redis = self._wal = None
        if self._batch is not None:
            await self._batch.close(self.timeout_s)
        with contextlib.suppress(RedisError, OSError):
            await redis.aclose()
        await self.durable.close()

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise StateError("the state store is not open")
        return self._redis

    @property
    def wal(self) -> Wal:
        if self._wal is None:
            raise StateError("the state store is not open")
        return self._wal

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> Awaitable[Any]:
        """The script's reply, to await (the batch's future itself: no coroutine of ours
        around it, a call's scripts being the most awaited thing on the path)."""
        if self._batch is None:
            raise StateError("the state store is not open")
        return self._batch.submit(script, keys, args)

    # -- the request path -------------------------------------------------------------
    async def reserve(self, ticket: Ticket) -> Reservation:
        # not `with unstorable_values()`: its generator per call cost more than this method
        try:
            return await self._reserving(ticket, None)
        except UNSTORABLE as exc:
            raise unstorable(exc) from exc

    async def _reserving(self, ticket: Ticket, claim: ExposureClaim | None) -> Reservation:
        for _ in range(8):
            try:
                return await self._reserve(ticket, claim)
            except _Retry as again:
                if again.args and isinstance(again.args[0], Ticket):
                    ticket = again.args[0]
        raise StateError("the state kept changing during the decision; try again")

    async def _reserve(self, ticket: Ticket, claim: ExposureClaim | None) -> Reservation:
        if self._version is None:
            await self._load()
        now = self.clock()
        call = ticket.call
        key = None if ticket.key_hash is None else await self._key(ticket.key_hash)
        refusal = authenticate(key, now)
        if refusal is not None or key is None:
            events: list[Event] = []
            if key is not None and refusal is not None and refusal.code == "key_expired":
                events.append(Event("key.expired", {
                    "key_id": key.id, "agent_id": key.agent, "scope": f"key:{key.id}",
                    "expired_at": refusal.details.get("expired_at")}, f"key.expired:{key.id}"))
            await self._refused(ticket, key, now, refusal, None, events)
            raise refusal or StateError("decision lost")
        labels = ticket.labels(key)
        scopes = call_scopes(key, call.vendor, labels)
        own = policies = self._policies
        tagged: list[tuple[str, str]] = []
        if len(scopes) > len(key.scopes) + 2:  # tag scopes: a value may fall under its `*`
            policies, tagged = resolve(scopes, own), tracked(scopes, own)
        early = precheck(call, self._policy_views.of(scopes, policies, own),
                         ticket.aliases, ticket.free_models, labels)
        if early is not None:
            # refused on this worker's copy of the policies alone: make sure it is current
            # (the script checks the version of everything it admits, but this never got there)
            try:
                current = await self.redis.hget(self.names.meta, "version")
            except RedisError as exc:
                raise StateError(f"Redis unavailable: {exc}") from exc
            if current != self._version:
                self._version = None
                raise _Retry
            await self._refused(ticket, key, now, early.error, early.scope, [])
            raise early.error
        grant = await self._grant(ticket, key, now)
        try:
            reservation = await self._paced(ticket, key, scopes, policies, now, grant,
                                            claim, (tagged, own, labels))
        except BaseException:
            if grant is not None:
                await self.durable.release_approval(grant.approval_id, ticket.request_id)
            raise
        if grant is not None and not reservation.approved:
            # no breach of the approval's came up: it is left for the call it is for
            await self.durable.release_approval(grant.approval_id, ticket.request_id)
        return reservation.value

    async def _grant(self, ticket: Ticket, key: KeyInfo, now: int) -> Grant | None:
        """The approval the call presents, claimed for it in PostgreSQL (given back if no
        breach of its comes up); a refusal (recorded) when it is not for this call or can no
        longer be used, another replica's call having claimed it first included."""
        approval_id = ticket.approval_id
        if not approval_id:
            return None
        for _ in range(3):  # claimed and given back meanwhile: judged again
            verdict = judge(await self.durable.find_approval(approval_id), approval_id,
                            key.id, ticket.call, ticket.shape, now)
            if verdict is None or isinstance(verdict, ApprovalMismatch):
                break
            if await self.durable.claim_approval(approval_id, key.id, ticket.request_id, now):
                return verdict
        else:
            verdict = ApprovalMismatch(f"Approval {approval_id} is in use by another call.",
                                       approval_id=approval_id, state="approved",
                                       differs=["state"])
        if isinstance(verdict, ApprovalMismatch):
            await self._refused(ticket, key, now, verdict, None, [])
        return None

    async def _decide(
        self, ticket: Ticket, key: KeyInfo, scopes: tuple[str, ...],
        policies: Mapping[str, Policy], now: int, grant: Grant | None,
        claim: ExposureClaim | None = None,
        tags: tuple[list[tuple[str, str]], Mapping[str, Policy], Mapping[str, str]] = (
            [], {}, {}), slot: Slot | None = None,
    ) -> Admitted:
        call = ticket.call
        if slot is not None:  # the endpoint it is to be sent to: checked in the same step
            scopes, policies = (*scopes, slot.scope), WithSlot(policies, slot)
        tracked_values, own, labels = tags
        cost = call.cost_micros or 0
        idem = (self.names.idempotency(call.vendor, ticket.idempotency_account,
                                       ticket.idempotency_key)
                if ticket.idempotency_key and not ticket.replay_of else "")
        checks, record, spec, rule = self._plans.planned(
            call, scopes, policies, self._policies, now, grant,
            Holder(key.id, key.agent, idem, self.worker))
        valued = tag_value_checks(self.names, tracked_values, own, now, record)
        loop, guard = loop_plan(self.names, ticket, key.id, rule, self._fingerprints)
        if more := (*valued, *guard):
            checks, spec = (*checks, *more), " ".join(filter(None, (spec, check_args(more))))
        row = ledger_row(ticket, key, now, self.worker, decision="allowed",
                   code=DOWNGRADED_CODE if ticket.downgraded_from
                   else "idempotent_replay" if ticket.replay_of else unpriced(call), scope=None,
                   status=None, reserved=cost, settlement="pending")
        row["overage_code"] = "alert_overage"  # the script says which overage it let through
        names = self.names
        script = self._reserve_script
        keys = [names.meta, names.leases, names.reservation(ticket.request_id),
                names.wal(self.worker), idem or names.meta, names.workers,
                *(c.key for c in checks)]
        args = ["" if self._clock is None else now, self._version or "", self.lease_ms,
                ticket.request_id, "1" if idem else "0", orjson.dumps(record),
                orjson.dumps(row), len(checks), self.worker, spec]
        if claim is not None:  # a call on a vendor object: counted there too
            script, keys, args = self._claimed(ticket, claim, keys, args)
        try:
            result = await self._call(script, keys, args)
        except StateError:
            self._in_doubt(ticket, key, now)  # the script may yet run: voided once Redis is back
            raise
        status = result[0]
        if status == "taken":  # a copy of this script ran before (a client's resend)
            self._in_doubt(ticket, key, now)
            raise StateError("the decision of this call was lost in transit; try again")
        self._void_soon()
        if status == "moved":
            raise ObjectMoved(claim.object_id if claim else None)
        if status == "not_ready":
            await self._ensure_ready()
            raise _Retry
        if status == "stale":
            self._version = None
            raise _Retry
        if status == "too_many_values":  # a new value of a `*` policy past max_values
            name = tracked_values[int(result[2]) - 1][0]
            wild = f"tag:{name}=*"
            error = too_many_values(name, own[wild].values_limit)
            await self._refused(ticket, key, int(result[1]), error, wild, [])
        if status == "replay":
            # decided like any call (allow-lists, windows), but it holds no money: the first
            # call's scopes keep the charge
            raise _Retry(replace(ticket, call=replace(call, cost_micros=0),
                                 idempotency_key=None, replay_of=str(result[2])))
        at = int(result[1])
        seen = views(checks, result[-1], scopes, policies, at)
        loop = loop and loop_seen(checks, result[-1], loop)
        decision = decide(call, key, seen, at, ticket.aliases, ticket.free_models, grant,
                          ticket.may_wait, labels, loop)
        if status == "refused":
            if slot is not None and (why := paused(seen[-1], at)
                                     or endpoint_refused(decision, seen[-1])):
                raise EndpointFull(slot.scope, why)  # another endpoint may have room
            if isinstance(decision, Admit):
                if decision.call is not None:  # fits with its maximum output lowered
                    raise _Retry(replace(ticket, call=decision.call))
                raise _Retry  # a period turned between plan and script
            if decision.hold_ms is not None:
                # not refused yet, and nothing written: the gateway asks again when the
                # calls in flight have settled
                assert isinstance(decision.error, BudgetExceeded)
                raise BudgetHeld(decision.error, decision.hold_ms)
            queued = held(decision, seen, ticket.may_queue)
            if not isinstance(queued, Admit) and queued.queue_s is not None:
                raise RateHeld(decision.error, queued.queue_s, decision.scope, key.agent)
            cheaper, _, event = downgrade(ticket, key, decision, lambda c: decide(
                c, key, seen, at, ticket.aliases, ticket.free_models, grant, False, labels,
                loop), at)
            if event is not None:  # fits on a cheaper model: the script decides that call
                raise _Retry(replace(cheaper, downgrade_event=event))
            await self._refused(ticket, key, at, decision.error, decision.scope,
                                list(decision.events), decision.approval)
            raise decision.error
        _, _, entry, overage, spent, cap = result[:6]
        # the row as this worker built it (the stream holds it as the script's text)
        self.wal.add(entry, {"k": "r", "ov": str(overage), "sp": spent, "cap": cap}, row)
        limits = Limits()
        if isinstance(decision, Admit):
            limits = decision.limits
            event = ticket.downgrade_event
            await self._announce((*decision.events, *((event,) if event else ())), at)
        else:  # the script's checks are the enforcement; this would be a bug to report
            log.error("the reservation script admitted what decide refused: %s",
                      decision.error.code)
        shadowed = decision.shadowed if isinstance(decision, Admit) else ()
        return Admitted(Reservation(ticket.request_id, key, limits, cost, at, call.clamped_to,
                                    ticket.replay_of, shadowed,
                                    call.model if ticket.downgraded_from else None,
                                    slot.scope if slot else None,
                                    queues=queue_wait(seen) is not None),
                        int(overage) == GRANTED)

    async def _refused(
        self, ticket: Ticket, key: KeyInfo | None, now: int, error: OutlayError | None,
        scope: str | None, events: list[Event], approval: ApprovalNeed | None = None,
    ) -> None:
        """Record a refusal and its events, then raise the error (opening the approval a
        `require_approval` breach asks for)."""
        status, code = (error.status, error.code) if error else (401, "invalid_api_key")
        figures = refusal_figures(error, ticket)
        row = ledger_row(ticket, key, now, self.worker, decision="refused", code=code, scope=scope,
                   status=status, reserved=0, settlement="none")
        row.update(spent=figures.spent, cap=figures.cap, held=figures.held,
                   estimated=figures.estimated)
        entries = [{"t": "row", "row": row}, *self._event_entries(events, now)]
        await self.wal.append(entries)
        if approval is not None and key is not None:
            raise await self.durable.open_approval(now, ticket, key, approval,
                                                   self.approval_ttl_ms)
        if error is not None:
            raise error

    async def record_refusal(self, ticket: Ticket, status: int, code: str) -> None:
        key = None
        if ticket.key_hash is not None:
            with contextlib.suppress(StateError):
                key = await self._key(ticket.key_hash)
        row = ledger_row(ticket, key, self.clock(), self.worker, decision="invalid", code=code,
                   scope=None, status=status, reserved=0, settlement="none")
        with unstorable_values():
            await self.wal.append([{"t": "row", "row": row}])
