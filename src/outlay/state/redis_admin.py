"""The replicated backend's administration that changes no decision: handed to PostgreSQL
as it is. (Writes that do change decisions are in redis.py: they also bump the version.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from outlay.policy.decision import KeyInfo
from outlay.policy.model import Policy
from outlay.state.base import KeyRecord
from outlay.webhooks.outbox import DeliveryJob, FinalState

if TYPE_CHECKING:
    from outlay.state.postgres import PostgresDurable


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

    async def list_keys(self, agent: str | None = None) -> list[KeyRecord]:
        return await self.durable.list_keys(agent)

    async def key_by_hash(self, key_hash: str) -> KeyInfo | None:
        return await self.durable.key_by_hash(key_hash)

    async def revoked_among(self, key_ids: list[str]) -> set[str]:
        return await self.durable.revoked_among(key_ids)

    async def get_policy(self, scope: str) -> Policy | None:
        return await self.durable.get_policy(scope)

    async def list_policies(self) -> dict[str, Policy]:
        return await self.durable.list_policies()

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
