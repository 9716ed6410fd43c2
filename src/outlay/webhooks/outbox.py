"""What a state backend offers webhooks: endpoints, the durable outbox and its deliveries.
The embedded store implements it in `state/sqlite_outbox.py`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

FinalState = Literal["delivered", "failed", "disabled"]
DELIVERY_STATES = ("pending", "delivered", "failed", "disabled")


@dataclass(frozen=True)
class DeliveryJob:
    """One attempt to make, claimed (leased) by one delivery worker."""

    event_id: str
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]  # every secret in force: during a rotation, old and new
    body: bytes
    attempts: int  # attempts already made
    created_ms: int  # when the event was created: the retry horizon counts from here
    lease_until_ms: int  # the claim; an attempt recorded after another worker re-claimed
                         # the delivery does not overwrite that worker's state


@runtime_checkable
class WebhookStore(Protocol):
    async def emit(self, event_type: str, data: Mapping[str, Any], *,
                   endpoint_id: str | None = None) -> str: ...
    async def add_webhook(self, url: str, events: list[str]) -> dict[str, Any]: ...
    async def list_webhooks(self) -> list[dict[str, Any]]: ...
    async def get_webhook(self, endpoint_id: str) -> dict[str, Any]: ...
    async def remove_webhook(self, endpoint_id: str) -> None: ...
    async def rotate_webhook_secret(self, endpoint_id: str,
                                    overlap_s: float = 86_400) -> dict[str, Any]: ...
    async def enable_webhook(self, endpoint_id: str) -> dict[str, Any]: ...
    async def claim_deliveries(self, limit: int, lease_ms: int) -> list[DeliveryJob]: ...
    async def record_attempt(
        self, job: DeliveryJob, status_code: int | None, error: str | None, duration_ms: int,
        next_attempt_ms: int | None, final_state: FinalState | None,
    ) -> None: ...
    async def list_deliveries(self, endpoint_id: str | None = None,
                              event_id: str | None = None,
                              limit: int = 100) -> list[dict[str, Any]]: ...
    async def prune_deliveries(self, before_ms: int) -> int: ...
