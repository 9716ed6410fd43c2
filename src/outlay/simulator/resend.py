"""The simulated Resend API: send one email, send a batch, fetch a sent email, in memory;
audiences and broadcasts are simulator.resend_broadcasts'.

Errors have Resend's shape, ``{"statusCode", "message", "name"}``. A batch is validated whole
(one bad email refuses all) unless ``x-batch-validation: permissive`` asks Resend to send
the good ones and list the rest under ``errors``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from multidict import CIMultiDict

from outlay.simulator.common import SimContext, SimReply, json_reply
from outlay.simulator.resend_broadcasts import Broadcasts
from outlay.simulator.resend_common import ResendError, json_body
from outlay.upstream.base import UpstreamRequest

MAX_RECIPIENTS = 50
MAX_BATCH = 100
_EMAIL = re.compile(r"/emails/([^/]+)")
_BARE_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")
_NAMED_ADDRESS = re.compile(r"[^<>]*<([^<>]+)>")
_CONTENT_FIELDS = ("html", "text", "react", "template")
class ResendSim:
    """One simulated Resend team: every email sent is kept so it can be fetched."""

    idempotent = True

    def __init__(self, ctx: SimContext) -> None:
        self._ctx = ctx
        self._emails: dict[str, dict[str, Any]] = {}
        self.broadcasts = Broadcasts(ctx.now)

    def handle(self, request: UpstreamRequest) -> SimReply:
        try:
            answer = self._route(request)
        except ResendError as exc:
            return self._error(exc)
        return json_reply(200, answer, {})

    def error(self, status: int, message: str) -> SimReply:
        return self._error(ResendError(status, message))

    def idempotency_conflict(self, key: str) -> SimReply:
        return self.error(
            409,
            "Same idempotency key used with a different request payload. Change your "
            "idempotency key or don't change your payload.",
        )

    def _error(self, exc: ResendError) -> SimReply:
        answer = {"statusCode": exc.status, "message": exc.message, "name": exc.name}
        return json_reply(exc.status, answer, {})

    def _route(self, request: UpstreamRequest) -> dict[str, Any]:
        method, path = request.method.upper(), request.path.rstrip("/")
        if path == "/emails/batch":
            if method != "POST":
                raise ResendError(405, "Method not allowed")
            permissive = CIMultiDict(request.headers).get("x-batch-validation") == "permissive"
            return self._send_batch(json_body(request.body), permissive=permissive)
        if path == "/emails":
            if method != "POST":
                raise ResendError(405, "Method not allowed")
            return {"id": self._send(_checked(json_body(request.body)))}
        found = self.broadcasts.route(method, path, request.body)
        if found is not None:
            return found
        match = _EMAIL.fullmatch(path)
        if match and method == "GET":
            email = self._emails.get(match.group(1))
            if email is None:
                raise ResendError(404, "Email not found")
            return email
        raise ResendError(404, "Route not found")

    def _send_batch(self, payload: object, *, permissive: bool) -> dict[str, Any]:
        if not isinstance(payload, list) or not 1 <= len(payload) <= MAX_BATCH:
            raise ResendError(
                422, f"The batch must be a list of 1 to {MAX_BATCH} emails.", "validation_error"
            )
        checked: list[dict[str, Any] | ResendError] = []
        for item in payload:
            try:
                checked.append(_checked(item))
            except ResendError as exc:
                if not permissive:
                    raise
                checked.append(exc)
        sent = [{"id": self._send(email)} for email in checked if isinstance(email, dict)]
        answer: dict[str, Any] = {"data": sent}
        if permissive:
            answer["errors"] = [
                {"index": index, "message": item.message}
                for index, item in enumerate(checked)
                if isinstance(item, ResendError)
            ]
        return answer

    def _send(self, email: Mapping[str, Any]) -> str:
        email_id = str(uuid.UUID(hex=self._ctx.new_id("")))
        created = datetime.fromtimestamp(self._ctx.now(), UTC)
        self._emails[email_id] = {
            "object": "email",
            "id": email_id,
            "from": email["from"],
            "to": _addresses(email["to"]),
            "cc": _addresses(email.get("cc")) or None,
            "bcc": _addresses(email.get("bcc")) or None,
            "reply_to": _addresses(email.get("reply_to")) or None,
            "subject": email["subject"],
            "html": email.get("html"),
            "text": email.get("text"),
            "created_at": created.strftime("%Y-%m-%d %H:%M:%S.%f+00"),
            "scheduled_at": email.get("scheduled_at"),
            "last_event": "delivered",
        }
        return email_id


def _checked(payload: object) -> dict[str, Any]:
    """The email, once it has what Resend requires; ResendError naming the first fault."""
    if not isinstance(payload, dict):
        raise ResendError(422, "Each email must be a JSON object.", "validation_error")
    for name in ("from", "to", "subject"):
        if payload.get(name) in (None, "", []):
            raise ResendError(422, f"Missing `{name}` field.", "missing_required_field")
    if not any(payload.get(name) for name in _CONTENT_FIELDS):
        raise ResendError(422, "Missing `html` or `text` field.", "missing_required_field")
    if not isinstance(payload["from"], str) or not _valid_address(payload["from"]):
        raise ResendError(
            422,
            "Invalid `from` field. The email address needs to follow the `email@example.com` "
            "or `Name <email@example.com>` format.",
            "invalid_from_address",
        )
    for name in ("to", "cc", "bcc", "reply_to"):
        addresses = payload.get(name)
        if addresses is None:
            continue
        listed = [addresses] if isinstance(addresses, str) else addresses
        if not isinstance(listed, list) or not all(
            isinstance(item, str) and _valid_address(item) for item in listed
        ):
            raise ResendError(
                422,
                f"Invalid `{name}` field. The email address needs to follow the "
                "`email@example.com` or `Name <email@example.com>` format.",
                "validation_error",
            )
        if len(listed) > MAX_RECIPIENTS:
            raise ResendError(
                422,
                f"Invalid `{name}` field. Maximum of {MAX_RECIPIENTS} recipients.",
                "validation_error",
            )
    return payload


def _valid_address(value: str) -> bool:
    named = _NAMED_ADDRESS.fullmatch(value.strip())
    return bool(_BARE_ADDRESS.fullmatch(named.group(1) if named else value.strip()))


def _addresses(value: object) -> list[str]:
    # Resend answers with lists whether one address or several was sent.
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value] if isinstance(value, list) else []
