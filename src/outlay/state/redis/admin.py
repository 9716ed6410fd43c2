"""The replicated backend's administration: handed to PostgreSQL as it is; the writes that
change decisions (keys, policies) followed by a new version in Redis, so that every worker
reloads what it cached, and by the counters of budgets new to a scope; the reports read
from Redis (live counters) and PostgreSQL (the ledger, brought up to date first)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from outlay.policy.decision import KeyInfo
from outlay.policy.model import Policy
from outlay.policy.periods import period_bounds
from outlay.policy.series import SeriesQuery, Sums
from outlay.policy.tags import is_wildcard, split, tracking_period, wildcard_of
from outlay.policy.windows import WINDOW_SECONDS, bucket_ms
from outlay.state.base import BudgetLine, KeyRecord, NewKey, StateError
from outlay.state.config_policies import ConfigPolicies
from outlay.state.redis.plan import counter_ttl_ms
from outlay.state.redis.wal import drain
from outlay.state.redis.windows import stored_window
from outlay.state.usage import tag_values_view, usage_view
from outlay.webhooks.outbox import DeliveryJob, FinalState

if TYPE_CHECKING:
    from outlay.state.postgres.durable import PostgresDurable
    from outlay.state.redis.plan import Names
    from outlay.state.redis.wal import Wal

log = logging.getLogger("outlay.state")


class AdminDelegate:
    durable: PostgresDurable

    async def init_admin_token(self, configured: str | None) -> str | None:
        return await self.durable.init_admin_token(configured)

    async def admin_token_ok(self, token: str) -> bool:
        return await self.durable.admin_token_ok(token)

    async def create_agent(self, name: str, group: str | None) -> dict[str, Any]:
        return await self.durable.create_agent(name, group)

    async def list_agents(self) -> list[dict[str, Any]]:
        return await self.durable.list_agents()

    async def list_groups(self) -> list[dict[str, Any]]:
        return await self.durable.list_groups()

    async def get_key(self, key_id: str) -> KeyRecord:
        return await self.durable.get_key(key_id)

    async def list_keys(
        self, agent: str | None = None, *, limit: int | None = None,
        active_at_ms: int | None = None,
    ) -> list[KeyRecord]:
        return await self.durable.list_keys(agent, limit=limit, active_at_ms=active_at_ms)

    async def key_by_hash(self, key_hash: str) -> KeyInfo | None:
        return await self.durable.key_by_hash(key_hash)

    async def revoked_among(self, key_ids: list[str]) -> set[str]:
        return await self.durable.revoked_among(key_ids)

    async def get_policy(self, scope: str) -> Policy | None:
        return await self.durable.get_policy(scope)

    async def list_policies(self, *, keys: bool = True) -> dict[str, Policy]:
        return await self.durable.list_policies(keys=keys)

    async def config_policies(self) -> ConfigPolicies:
        return await self.durable.config_policies()

    # approvals
    async def list_approvals(self, state: str | None = None) -> list[dict[str, Any]]:
        return await self.durable.list_approvals(state)

    async def get_approval(self, approval_id: str) -> dict[str, Any]:
        return await self.durable.get_approval(approval_id)

    async def decide_approval(
        self, approval_id: str, approve: bool, note: str | None = None
    ) -> dict[str, Any]:
        return await self.durable.decide_approval(approval_id, approve, note)

    # webhooks
    async def emit(self, event_type: str, data: Mapping[str, Any], *,
                   endpoint_id: str | None = None) -> str:
        return await self.durable.emit(event_type, data, endpoint_id=endpoint_id)

    async def add_webhook(self, url: str, events: list[str]) -> dict[str, Any]:
        return await self.durable.add_webhook(url, events)

    async def list_webhooks(self) -> list[dict[str, Any]]:
        return await self.durable.list_webhooks()

    async def get_webhook(self, endpoint_id: str) -> dict[str, Any]:
        return await self.durable.get_webhook(endpoint_id)

    async def remove_webhook(self, endpoint_id: str) -> None:
        await self.durable.remove_webhook(endpoint_id)

    async def rotate_webhook_secret(self, endpoint_id: str,
                                    overlap_s: float = 86_400) -> dict[str, Any]:
        return await self.durable.rotate_webhook_secret(endpoint_id, overlap_s)

    async def enable_webhook(self, endpoint_id: str) -> dict[str, Any]:
        return await self.durable.enable_webhook(endpoint_id)

    async def claim_deliveries(self, limit: int, lease_ms: int) -> list[DeliveryJob]:
        return await self.durable.claim_deliveries(limit, lease_ms)

    async def record_attempt(
        self, job: DeliveryJob, status_code: int | None, error: str | None, duration_ms: int,
        next_attempt_ms: int | None, final_state: FinalState | None,
    ) -> None:
        await self.durable.record_attempt(job, status_code, error, duration_ms,
                                          next_attempt_ms, final_state)

    async def list_deliveries(self, endpoint_id: str | None = None,
                              event_id: str | None = None,
                              limit: int = 100) -> list[dict[str, Any]]:
        return await self.durable.list_deliveries(endpoint_id, event_id, limit)

    async def prune_deliveries(self, before_ms: int) -> int:
        return await self.durable.prune_deliveries(before_ms)


class RedisAdmin(AdminDelegate):
    if TYPE_CHECKING:
        names: Names
        worker: str
        clock: Callable[[], int]
        _adopt_script: Any

        @property
        def redis(self) -> Redis: ...

        @property
        def wal(self) -> Wal: ...

        async def _changed(self) -> None: ...

        async def _settled_so_far(self) -> None: ...

        def _call(self, script: Any, keys: list[str], args: list[Any]) -> Awaitable[Any]: ...

    async def update_key(
        self, key_id: str, name: str | None, labels: Mapping[str, str] | None,
        policy: Policy | None,
    ) -> KeyRecord:
        record = await self.durable.update_key(key_id, name, labels, policy)
        await self._changed()
        return record

    async def revoke_key(self, key_id: str) -> KeyRecord:
        record = await self.durable.revoke_key(key_id)
        await self._changed()
        return record

    async def revoke_keys(self, agent: str | None = None, group: str | None = None
                          ) -> list[str]:
        ids = await self.durable.revoke_keys(agent=agent, group=group)
        await self._changed()
        return ids

    async def create_key(self, new: NewKey) -> tuple[KeyRecord, str]:
        created = await self.durable.create_key(new)
        if new.policy is not None:
            await self._adopt(f"key:{created[0].id}", None, new.policy)
            await self._changed()
        return created

    async def put_policy(self, scope: str, policy: Policy) -> Policy:
        before = await self.durable.get_policy(scope)
        await self.durable.put_policy(scope, policy)
        await self._adopt(scope, before, policy)
        await self._changed()
        return policy

    async def delete_policy(self, scope: str) -> None:
        await self.durable.delete_policy(scope)
        await self._changed()

    async def apply_config_policies(
        self, file: str | None, policies: Mapping[str, Policy]
    ) -> list[str]:
        before = {scope: await self.durable.get_policy(scope) for scope in policies}
        released = await self.durable.apply_config_policies(file, policies)
        for scope, policy in policies.items():
            await self._adopt(scope, before[scope], policy)
        await self._changed()
        return released

    async def _adopt(self, scope: str, before: Policy | None, policy: Policy) -> None:
        """A budget period new to a scope starts from what the ledger says the scope spent
        in it, and holds the scope's calls still in flight (`lua/adopt.lua`)."""
        had = {b.counter for b in before.budgets} if before else set()
        counters = {(b.counter, b.period, b.flow) for b in policy.budgets
                    if b.counter not in had}
        if not counters:
            return
        await self.wal.flush()
        now = self.clock()
        for counter, period, flow in sorted(counters):
            start = period_bounds(period, now)[0]
            spent, _ = await self.durable.committed(scope, start, flow)
            watched = int(any(b.warn_at is not None or b.mode == "soft"
                              for b in policy.budgets if b.counter == counter))
            await self._call(self._adopt_script,
                             [self.names.counter(scope, counter, start), self.names.leases],
                             [scope, counter, start, spent, watched, self.names.prefix, flow,
                              counter_ttl_ms(period)])

    async def usage(self, scope: str, values_limit: int = 100) -> dict[str, Any]:
        await self._settled_so_far()  # this worker's queued settlements count too
        policy = await self.durable.get_policy(scope)
        wild = wildcard_of(scope)
        if policy is None and wild is not None:  # a tag value under its `*` policy
            policy = await self.durable.get_policy(wild)
        now = self.clock()
        windows = {}
        counters: dict[str, tuple[int, int]] = {}
        try:
            if policy is not None:
                for name in WINDOW_SECONDS:
                    if getattr(policy, name) is not None:
                        fields = await self.redis.hgetall(self.names.window(scope, name))
                        windows[name] = stored_window(
                            {str(k): str(v) for k, v in fields.items()}, bucket_ms(name), now)
                for budget in policy.budgets:
                    start = period_bounds(budget.period, now)[0]
                    spent, reserved = await self.redis.hmget(
                        self.names.counter(scope, budget.counter, start), "spent", "reserved")
                    counters[budget.counter] = (int(spent or 0), int(reserved or 0))
        except RedisError as exc:
            raise StateError(f"Redis unavailable: {exc}") from exc
        await self._catch_up()
        since = period_bounds("month", now)[0]
        by_model, by_vendor = await self.durable.spend_by(scope, since)
        view = usage_view(scope, policy, now, windows, counters, since, by_model, by_vendor)
        parts = split(scope)
        if parts is not None and parts[1] == "*" and policy is not None:
            view.update(await self._values_seen(parts[0], policy, now, values_limit))
        return view

    async def _values_seen(self, name: str, policy: Policy, now: int, limit: int
                           ) -> dict[str, Any]:
        """The values a `tag:<name>=*` policy tracks this period, with their spend."""
        start = period_bounds(tracking_period(policy), now)[0]
        periods = sorted({(b.counter, b.period) for b in policy.budgets})
        try:
            values = sorted(map(str, await self.redis.smembers(
                self.names.tag_values(name, start))))
            pipe = self.redis.pipeline(transaction=False)
            for value in values:
                for counter, period in periods:
                    pipe.hmget(self.names.counter(f"tag:{name}={value}", counter,
                                                  period_bounds(period, now)[0]),
                               "spent", "reserved")
            found = iter(await pipe.execute()) if values and periods else iter(())
        except RedisError as exc:
            raise StateError(f"Redis unavailable: {exc}") from exc
        spend = {v: {p: (lambda r: (int(r[0] or 0), int(r[1] or 0)))(next(found))
                     for p, _ in periods} for v in values} if periods else {}
        return tag_values_view(policy, len(values), values, spend, name, limit)

    async def budgets(self) -> list[BudgetLine]:
        await self._settled_so_far()
        policies = await self.durable.list_policies(keys=False)
        now = self.clock()
        lines = []
        try:
            for scope, policy in policies.items():
                if is_wildcard(scope):
                    continue  # its values' budgets: see its usage
                for budget in policy.budgets:
                    start = period_bounds(budget.period, now)[0]
                    spent, reserved = await self.redis.hmget(
                        self.names.counter(scope, budget.counter, start), "spent", "reserved")
                    lines.append(BudgetLine(scope, budget.period, budget.mode,
                                            budget.cap_micros, int(spent or 0),
                                            int(reserved or 0), budget.flow))
        except RedisError as exc:
            raise StateError(f"Redis unavailable: {exc}") from exc
        return lines

    async def _catch_up(self) -> None:
        """Before reading the ledger: write this worker's entries, and those every other
        worker still holds in its stream, so a report shows every call already decided."""
        await self.wal.flush()
        try:
            workers = await self.redis.zrange(self.names.workers, 0, -1)
            for worker in workers:
                if worker != self.worker:
                    await drain(self.redis, self.names.wal(str(worker)), self.durable,
                                delete=False)
        except RedisError as exc:  # the ledger as PostgreSQL has it, then
            log.warning("reading the ledger without the entries still in Redis: %s", exc)

    async def audit(self, scope: str | None, limit: int) -> list[dict[str, Any]]:
        await self._settled_so_far()
        await self._catch_up()
        return await self.durable.audit(scope, limit)

    async def report(self, group_by: str, since_ms: int | None) -> list[dict[str, Any]]:
        await self._settled_so_far()
        await self._catch_up()
        return await self.durable.report(group_by, since_ms)

    async def series(self, query: SeriesQuery) -> list[Sums]:
        await self._settled_so_far()
        await self._catch_up()
        return await self.durable.series(query)
