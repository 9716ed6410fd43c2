"""The simulated Twilio Messages API (2010-04-01): send, fetch and list SMS, in memory; calls
and phone numbers are simulator.twilio_voice's.

Any account SID in the path is accepted, since there is no real account behind it. Twilio's
magic test numbers fail as with test credentials: To +15005550001 (invalid), 2 (unreachable),
3 (no permission for the region), 4 (unsubscribed), 9 (not a mobile number); From
+15005550001 (invalid sender). ``num_segments`` is counted as the gateway prices it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from outlay.simulator.common import SimContext, SimReply, json_reply
from outlay.simulator.twilio_common import API_VERSION, TwilioError, first, form_of
from outlay.simulator.twilio_voice import Voice
from outlay.upstream.base import UpstreamRequest
from outlay.vendors.twilio_segments import sms_segments

MAX_BODY_CHARS = 1600
MAX_PAGE_SIZE = 1000
_MESSAGES = re.compile(rf"/{API_VERSION}/Accounts/([^/]+)/Messages\.json")
_MESSAGE = re.compile(rf"/{API_VERSION}/Accounts/([^/]+)/Messages/([^/]+)\.json")
_PHONE = re.compile(r"(?:[a-z]+:)?\+?[1-9]\d{6,14}")
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")
_MAGIC_TO: Mapping[str, tuple[int, str]] = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550002": (
        21612,
        "The 'To' phone number: +15005550002, is not currently reachable using the 'From' "
        "phone number via SMS.",
    ),
    "+15005550003": (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the "
        "'To' number: +15005550003.",
    ),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}
_MAGIC_FROM_INVALID = "+15005550001"


class TwilioSim:
    """Simulated Twilio accounts, one message store across them."""

    idempotent = False

    def __init__(self, ctx: SimContext) -> None:
        self._ctx = ctx
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._voice = Voice(ctx)

    def handle(self, request: UpstreamRequest) -> SimReply:
        try:
            status, answer = self._voice.route(request) or self._route(request)
        except TwilioError as exc:
            return self._error(exc)
        if answer is None:  # 204: released
            return SimReply(status, self._headers(), ())
        return json_reply(status, answer, self._headers())

    def error(self, status: int, message: str) -> SimReply:
        return self._error(TwilioError(status, 20003 if status == 401 else 20000 + status, message))

    def idempotency_conflict(self, key: str) -> SimReply:
        # Twilio's REST API has no idempotency keys; here only to complete the interface.
        return self.error(409, f"Idempotency-Key {key!r} is not supported")

    def _error(self, exc: TwilioError) -> SimReply:
        answer = {
            "code": exc.code,
            "message": exc.message,
            "more_info": f"https://www.twilio.com/docs/errors/{exc.code}",
            "status": exc.status,
        }
        return json_reply(exc.status, answer, self._headers())

    def _headers(self) -> dict[str, str]:
        return {"Twilio-Request-Id": self._ctx.new_id("RQ")}

    def _route(self, request: UpstreamRequest) -> tuple[int, dict[str, Any] | None]:
        method, path = request.method.upper(), request.path
        collection = _MESSAGES.fullmatch(path)
        if collection:
            account = collection.group(1)
            if method == "POST":
                return 201, self._create(account, form_of(request.body))
            if method == "GET":
                return 200, self._list(account, path, form_of(request.query.encode()))
            raise TwilioError(405, 20004, "Method not allowed")
        single = _MESSAGE.fullmatch(path)
        if single:
            if method != "GET":
                raise TwilioError(405, 20004, "Method not allowed")
            message = self._messages.get((single.group(1), single.group(2)))
            if message is not None:
                return 200, message
        raise TwilioError(404, 20404, f"The requested resource {path} was not found")

    def _create(self, account: str, form: Mapping[str, list[str]]) -> dict[str, Any]:
        to, sender = first(form, "To"), first(form, "From")
        service = first(form, "MessagingServiceSid")
        body = first(form, "Body") or ""
        media = form.get("MediaUrl", [])
        if not to:
            raise TwilioError(400, 21604, "A 'To' phone number is required.")
        if not sender and not service:
            raise TwilioError(400, 21603, "A 'From' phone number is required.")
        if not body and not media and not first(form, "ContentSid"):
            raise TwilioError(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            raise TwilioError(
                400,
                21617,
                f"The concatenated message body exceeds the {MAX_BODY_CHARS} character limit.",
            )
        if not _PHONE.fullmatch(_PHONE_PUNCTUATION.sub("", to)):
            raise TwilioError(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to in _MAGIC_TO:
            raise TwilioError(400, *_MAGIC_TO[to])
        if sender == _MAGIC_FROM_INVALID:
            raise TwilioError(
                400,
                21212,
                f"The 'From' number {sender} is not a valid phone number, shortcode, "
                "or alphanumeric sender ID.",
            )
        sid = self._ctx.new_id("SM")
        now = format_datetime(datetime.fromtimestamp(self._ctx.now(), UTC))
        uri = f"/{API_VERSION}/Accounts/{account}/Messages/{sid}.json"
        message: dict[str, Any] = {
            "account_sid": account,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": str(len(media)),
            "num_segments": str(sms_segments(body).count),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # A messaging service picks the sender later, so Twilio first reports "accepted".
            "status": "queued" if sender else "accepted",
            "subresource_uris": {
                "media": uri.removesuffix(".json") + "/Media.json",
                "feedback": uri.removesuffix(".json") + "/Feedback.json",
            },
            "to": to,
            "uri": uri,
        }
        self._messages[(account, sid)] = message
        return message

    def _list(self, account: str, path: str, query: Mapping[str, list[str]]) -> dict[str, Any]:
        size_text = first(query, "PageSize") or "50"
        if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_PAGE_SIZE:
            raise TwilioError(400, 20001, f"Invalid PageSize: {size_text}")
        size = int(size_text)
        wanted = {name: first(query, name) for name in ("To", "From")}
        newest_first = [
            message
            for (owner, _), message in reversed(self._messages.items())
            if owner == account
            and all(
                value is None or message[name.lower()] == value for name, value in wanted.items()
            )
        ]
        page = newest_first[:size]
        first_page = f"{path}?PageSize={size}&Page=0"
        return {
            "end": max(len(page) - 1, 0),
            "first_page_uri": first_page,
            "messages": page,
            "next_page_uri": None,
            "page": 0,
            "page_size": size,
            "previous_page_uri": None,
            "start": 0,
            "uri": first_page,
        }
