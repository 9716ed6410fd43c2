"""The simulated Twilio Voice and phone-number APIs (2010-04-01): place and fetch calls; buy,
fetch, list and release phone numbers, in memory, with Twilio's fields and error codes."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from outlay.simulator.common import SimContext
from outlay.simulator.twilio_common import API_VERSION, TwilioError, first, form_of
from outlay.upstream.base import UpstreamRequest

MAX_TIME_LIMIT_S = 14_400
_CALLS = re.compile(rf"/{API_VERSION}/Accounts/([^/]+)/Calls\.json")
_CALL = re.compile(rf"/{API_VERSION}/Accounts/([^/]+)/Calls/([^/]+)\.json")
_NUMBERS = re.compile(rf"/{API_VERSION}/Accounts/([^/]+)/IncomingPhoneNumbers\.json")
_NUMBER = re.compile(rf"/{API_VERSION}/Accounts/([^/]+)/IncomingPhoneNumbers/([^/]+)\.json")
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_ADDRESS = re.compile(r"(?:client|sip):\S+")
_AREA_CODE = re.compile(r"[2-9]\d{2}")

Answer = tuple[int, dict[str, Any] | None]


class Voice:
    """Calls and numbers of every simulated account."""

    def __init__(self, ctx: SimContext) -> None:
        self._ctx = ctx
        self._calls: dict[tuple[str, str], dict[str, Any]] = {}
        self._numbers: dict[tuple[str, str], dict[str, Any]] = {}
        self._routes: list[tuple[re.Pattern[str], dict[str, Callable[..., Answer]]]] = [
            (_CALLS, {"POST": self._place}),
            (_CALL, {"GET": self._call}),
            (_NUMBERS, {"POST": self._buy, "GET": self._list_numbers}),
            (_NUMBER, {"GET": self._number, "DELETE": self._release}),
        ]

    def route(self, request: UpstreamRequest) -> Answer | None:
        """The answer to a Voice or number request; None for a path that is neither."""
        for pattern, methods in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            handler = methods.get(request.method.upper())
            if handler is None:
                raise TwilioError(405, 20004, "Method not allowed")
            return handler(*match.groups(), form_of(request.body))
        return None

    # -- calls ---------------------------------------------------------------------------
    def _place(self, account: str, form: Mapping[str, list[str]]) -> Answer:
        to, sender = first(form, "To"), first(form, "From")
        if not to:
            raise TwilioError(400, 21201, "No 'To' number is specified")
        if not sender:
            raise TwilioError(400, 21213, "No 'From' number is specified")
        if not _E164.fullmatch(to) and not _ADDRESS.fullmatch(to):
            raise TwilioError(400, 21217, f"Phone number is not a valid phone number: {to}")
        if not any(first(form, name) for name in ("Url", "Twiml", "ApplicationSid")):
            raise TwilioError(400, 21205, "Url parameter is required.")
        limit = first(form, "TimeLimit")
        if limit is not None and (not limit.isdigit()
                                  or not 1 <= int(limit) <= MAX_TIME_LIMIT_S):
            raise TwilioError(400, 21232, f"TimeLimit must be between 1 and {MAX_TIME_LIMIT_S}"
                              f" seconds, got {limit}")
        sid = self._ctx.new_id("CA")
        now = self._now()
        uri = f"/{API_VERSION}/Accounts/{account}/Calls/{sid}.json"
        call: dict[str, Any] = {
            "account_sid": account, "annotation": None, "answered_by": None,
            "api_version": API_VERSION, "caller_name": None, "date_created": now,
            "date_updated": now, "direction": "outbound-api", "duration": None,
            "end_time": None, "forwarded_from": None, "from": sender, "from_formatted": sender,
            "group_sid": None, "parent_call_sid": None, "phone_number_sid": None,
            "price": None, "price_unit": "USD", "queue_time": "0", "sid": sid,
            "start_time": None, "status": "queued",
            "subresource_uris": {
                "notifications": uri.removesuffix(".json") + "/Notifications.json",
                "recordings": uri.removesuffix(".json") + "/Recordings.json",
            },
            "to": to, "to_formatted": to, "trunk_sid": None, "uri": uri,
        }
        self._calls[(account, sid)] = call
        return 201, call

    def _call(self, account: str, sid: str, _form: Mapping[str, list[str]]) -> Answer:
        return 200, self._existing(self._calls, account, sid)

    # -- numbers -------------------------------------------------------------------------
    def _buy(self, account: str, form: Mapping[str, list[str]]) -> Answer:
        number, area = first(form, "PhoneNumber"), first(form, "AreaCode")
        if number is None and area is None:
            raise TwilioError(400, 21452, "No phone numbers found: give PhoneNumber or AreaCode")
        if number is None:
            if area is None or not _AREA_CODE.fullmatch(area):
                raise TwilioError(400, 21452, f"No phone numbers found in area code {area}")
            number = f"+1{area}555{random.randrange(10_000):04d}"
        if not _E164.fullmatch(number):
            raise TwilioError(400, 21421, f"PhoneNumber is invalid: {number}")
        if any(n["phone_number"] == number for n in self._numbers.values()):
            raise TwilioError(400, 21422, f"PhoneNumber {number} is not available")
        sid = self._ctx.new_id("PN")
        now = self._now()
        owned: dict[str, Any] = {
            "account_sid": account, "address_requirements": "none",
            "api_version": API_VERSION, "beta": False,
            "capabilities": {"voice": True, "sms": True, "mms": True, "fax": False},
            "date_created": now, "date_updated": now,
            "friendly_name": first(form, "FriendlyName") or number, "origin": "twilio",
            "phone_number": number, "sid": sid, "sms_url": first(form, "SmsUrl") or "",
            "status": "in-use", "uri": f"/{API_VERSION}/Accounts/{account}/"
                                       f"IncomingPhoneNumbers/{sid}.json",
            "voice_url": first(form, "VoiceUrl") or "",
        }
        self._numbers[(account, sid)] = owned
        return 201, owned

    def _number(self, account: str, sid: str, _form: Mapping[str, list[str]]) -> Answer:
        return 200, self._existing(self._numbers, account, sid)

    def _release(self, account: str, sid: str, _form: Mapping[str, list[str]]) -> Answer:
        self._existing(self._numbers, account, sid)
        del self._numbers[(account, sid)]
        return 204, None

    def _list_numbers(self, account: str, _form: Mapping[str, list[str]]) -> Answer:
        owned = [n for (owner, _), n in self._numbers.items() if owner == account]
        uri = f"/{API_VERSION}/Accounts/{account}/IncomingPhoneNumbers.json?PageSize=50&Page=0"
        return 200, {"end": max(len(owned) - 1, 0), "first_page_uri": uri,
                     "incoming_phone_numbers": owned, "next_page_uri": None, "page": 0,
                     "page_size": 50, "previous_page_uri": None, "start": 0, "uri": uri}

    def _existing(self, store: Mapping[tuple[str, str], dict[str, Any]], account: str,
                  sid: str) -> dict[str, Any]:
        found = store.get((account, sid))
        if found is None:
            raise TwilioError(404, 20404, f"The requested resource {sid} was not found")
        return found

    def _now(self) -> str:
        return format_datetime(datetime.fromtimestamp(self._ctx.now(), UTC))
