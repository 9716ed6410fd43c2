"""The simulated Resend audiences, contacts and broadcasts: a broadcast is created as a draft
for an audience, then sent (or scheduled) to every contact of it who is subscribed."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from outlay.simulator.resend_common import ResendError, json_body

_AUDIENCE = re.compile(r"/audiences/([^/]+)")
_CONTACTS = re.compile(r"/audiences/([^/]+)/contacts")
_BROADCAST = re.compile(r"/broadcasts/([^/]+)")
_SEND = re.compile(r"/broadcasts/([^/]+)/send")
_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")

Route = tuple[str, re.Pattern[str] | str, Callable[..., dict[str, Any]]]


class Broadcasts:
    """The audiences, their contacts and the broadcasts of one simulated team."""

    def __init__(self, now: Callable[[], int]) -> None:
        self._now = now
        self.audiences: dict[str, dict[str, Any]] = {}
        self.contacts: dict[str, list[dict[str, Any]]] = {}
        self.broadcasts: dict[str, dict[str, Any]] = {}
        self._routes: list[Route] = [
            ("POST", "/audiences", self._new_audience),
            ("POST", "/segments", self._new_segment),
            ("POST", "/broadcasts", self._new_broadcast),
            ("GET", _AUDIENCE, self._audience),
            ("POST", _CONTACTS, self._new_contact),
            ("GET", _CONTACTS, self._list_contacts),
            ("GET", _BROADCAST, self._broadcast),
            ("POST", _SEND, self._send),
        ]

    def route(self, method: str, path: str, body: bytes) -> dict[str, Any] | None:
        """The answer to an audience or broadcast request; None for any other path."""
        for wanted, pattern, handler in self._routes:
            groups: tuple[str, ...] | None
            if isinstance(pattern, str):
                groups = () if path == pattern else None
            else:
                match = pattern.fullmatch(path)
                groups = None if match is None else match.groups()
            if groups is None or wanted != method:
                continue
            return handler(*groups, *((json_body(body),) if method == "POST" else ()))
        return None

    def _new_audience(self, payload: object) -> dict[str, Any]:
        name = _field(payload, "name")
        audience_id = str(uuid.uuid4())
        self.audiences[audience_id] = {"object": "audience", "id": audience_id, "name": name,
                                       "created_at": self._iso()}
        self.contacts[audience_id] = []
        return {"object": "audience", "id": audience_id, "name": name}

    def _new_segment(self, payload: object) -> dict[str, Any]:
        """A segment: what Resend now calls an audience."""
        return {**self._new_audience(payload), "object": "segment"}

    def _audience(self, audience_id: str) -> dict[str, Any]:
        return self._existing(self.audiences, audience_id, "Audience")

    def _new_contact(self, audience_id: str, payload: object) -> dict[str, Any]:
        self._existing(self.audiences, audience_id, "Audience")
        email = _field(payload, "email")
        if not _ADDRESS.fullmatch(email):
            raise ResendError(422, f"Invalid `email` field: {email}", "validation_error")
        assert isinstance(payload, dict)
        contact = {"id": str(uuid.uuid4()), "email": email,
                   "first_name": payload.get("first_name"),
                   "last_name": payload.get("last_name"), "created_at": self._iso(),
                   "unsubscribed": bool(payload.get("unsubscribed", False))}
        self.contacts[audience_id].append(contact)
        return {"object": "contact", "id": contact["id"]}

    def _list_contacts(self, audience_id: str) -> dict[str, Any]:
        self._existing(self.audiences, audience_id, "Audience")
        return {"object": "list", "data": list(reversed(self.contacts[audience_id]))}

    def _new_broadcast(self, payload: object) -> dict[str, Any]:
        # `segment_id` is the newer name of `audience_id`
        if isinstance(payload, dict) and "audience_id" not in payload:
            payload = {**payload, "audience_id": payload.get("segment_id")}
        audience_id = _field(payload, "audience_id")
        self._existing(self.audiences, audience_id, "Audience")
        assert isinstance(payload, dict)
        broadcast_id = str(uuid.uuid4())
        broadcast = {
            "object": "broadcast", "id": broadcast_id, "name": payload.get("name"),
            "audience_id": audience_id, "from": _field(payload, "from"),
            "subject": _field(payload, "subject"), "reply_to": payload.get("reply_to"),
            "preview_text": payload.get("preview_text"), "status": "draft",
            "created_at": self._iso(), "scheduled_at": None, "sent_at": None,
        }
        self.broadcasts[broadcast_id] = broadcast
        if payload.get("send") is True:  # created and sent in one call
            self._send(broadcast_id, payload)
        return {"id": broadcast_id}

    def _broadcast(self, broadcast_id: str) -> dict[str, Any]:
        return self._existing(self.broadcasts, broadcast_id, "Broadcast")

    def _send(self, broadcast_id: str, payload: object) -> dict[str, Any]:
        broadcast = self._existing(self.broadcasts, broadcast_id, "Broadcast")
        if broadcast["status"] != "draft":
            raise ResendError(422, f"Broadcast {broadcast_id} was already {broadcast['status']}",
                              "validation_error")
        scheduled = payload.get("scheduled_at") if isinstance(payload, dict) else None
        if scheduled:
            broadcast.update(status="queued", scheduled_at=scheduled)
        else:
            broadcast.update(status="sent", sent_at=self._iso())
        return {"id": broadcast_id}

    def _existing(self, store: dict[str, dict[str, Any]], key: str, kind: str
                  ) -> dict[str, Any]:
        found = store.get(key)
        if found is None:
            raise ResendError(404, f"{kind} not found")
        return found

    def _iso(self) -> str:
        return datetime.fromtimestamp(self._now(), UTC).isoformat()


def _field(payload: object, name: str) -> str:
    if not isinstance(payload, dict):
        raise ResendError(422, "The request body must be a JSON object.", "validation_error")
    value = payload.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ResendError(422, f"Missing `{name}` field.", "missing_required_field")
    return value
