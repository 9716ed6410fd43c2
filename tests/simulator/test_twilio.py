"""The simulated Twilio Messages API: the message resource, segments and error shapes."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest

from outlay.simulator.vendors import SimulatedVendors
from outlay.upstream import UpstreamRequest

ACCOUNT = "AC" + "b" * 32
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
SMS = {"To": "+15558675310", "From": "+15017122661", "Body": "Hello"}


async def twilio_call(
    sim: SimulatedVendors,
    method: str,
    path: str,
    form: dict[str, str] | list[tuple[str, str]] | None = None,
    query: str = "",
) -> tuple[int, dict[str, str], dict[str, Any]]:
    body = urlencode(form or {}).encode()
    request = UpstreamRequest("twilio", method, path, {}, body, False, query)
    response = await sim.send(request)
    try:
        raw = await response.read()
    finally:
        await response.close()
    return response.status, {k.lower(): v for k, v in response.headers.items()}, json.loads(raw)


async def test_a_message_is_created_queued_with_twilios_fields() -> None:
    sim = SimulatedVendors()
    status, headers, message = await twilio_call(
        sim, "POST", MESSAGES, {**SMS, "MaxPrice": "0.02", "StatusCallback": "https://x.example/cb"}
    )
    assert status == 201
    assert headers["twilio-request-id"].startswith("RQ")
    assert re.fullmatch(r"SM[0-9a-f]{32}", message["sid"])
    assert message["account_sid"] == ACCOUNT
    assert (message["to"], message["from"], message["body"]) == (
        "+15558675310",
        "+15017122661",
        "Hello",
    )
    assert (message["status"], message["direction"], message["api_version"]) == (
        "queued",
        "outbound-api",
        "2010-04-01",
    )
    assert (message["num_segments"], message["num_media"]) == ("1", "0")
    assert (message["price"], message["price_unit"]) == (None, "USD")
    assert (message["error_code"], message["error_message"]) == (None, None)
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000", message["date_created"])
    assert message["uri"] == f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{message['sid']}.json"
    status, _, fetched = await twilio_call(sim, "GET", message["uri"])
    assert (status, fetched) == (200, message)


async def test_a_messaging_service_send_is_accepted_without_a_from() -> None:
    _, _, message = await twilio_call(
        SimulatedVendors(),
        "POST",
        MESSAGES,
        {"To": "+15558675310", "MessagingServiceSid": "MG1", "Body": "hi"},
    )
    assert (message["status"], message["from"], message["messaging_service_sid"]) == (
        "accepted",
        None,
        "MG1",
    )


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, "1"),
        ("a" * 161, "2"),
        ("a" * 306, "2"),
        ("a" * 307, "3"),
        ("€" * 80, "1"),  # an extension character takes two septets
        ("€" * 81, "2"),
        ("é" * 160, "1"),  # é is in the GSM basic set
        ("ж" * 70, "1"),
        ("ж" * 71, "2"),
    ],
)
async def test_segments_follow_gsm7_and_ucs2(body: str, segments: str) -> None:
    _, _, message = await twilio_call(SimulatedVendors(), "POST", MESSAGES, {**SMS, "Body": body})
    assert message["num_segments"] == segments


async def test_media_only_messages_need_no_body() -> None:
    form = [("To", "+15558675310"), ("From", "+15017122661")]
    form += [("MediaUrl", "https://x.example/a.png"), ("MediaUrl", "https://x.example/b.png")]
    status, _, message = await twilio_call(SimulatedVendors(), "POST", MESSAGES, form)
    assert (status, message["num_media"], message["body"]) == (201, "2", "")


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": "+15017122661", "Body": "x"}, 21604),
        ({"To": "+15558675310", "Body": "x"}, 21603),
        ({"To": "+15558675310", "From": "+15017122661"}, 21602),
        ({**SMS, "Body": "x" * 1601}, 21617),
        ({**SMS, "To": "hello"}, 21211),
        ({**SMS, "To": "+15005550001"}, 21211),
        ({**SMS, "To": "+15005550002"}, 21612),
        ({**SMS, "To": "+15005550003"}, 21408),
        ({**SMS, "To": "+15005550004"}, 21610),
        ({**SMS, "To": "+15005550009"}, 21614),
        ({**SMS, "From": "+15005550001"}, 21212),
    ],
)
async def test_refusals_have_twilios_error_shape(form: dict[str, str], code: int) -> None:
    status, _, body = await twilio_call(SimulatedVendors(), "POST", MESSAGES, form)
    assert status == 400
    assert set(body) == {"code", "message", "more_info", "status"}
    assert (body["code"], body["status"]) == (code, 400)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"


async def test_unknown_messages_and_routes_are_404s_and_wrong_methods_405s() -> None:
    sim = SimulatedVendors()
    status, _, body = await twilio_call(
        sim, "GET", f"/2010-04-01/Accounts/{ACCOUNT}/Messages/SMnope.json"
    )
    assert (status, body["code"]) == (404, 20404)
    status, _, body = await twilio_call(sim, "POST",
                                        f"/2010-04-01/Accounts/{ACCOUNT}/Conferences.json")
    assert (status, body["code"]) == (404, 20404)
    status, _, body = await twilio_call(sim, "DELETE", MESSAGES)
    assert (status, body["code"]) == (405, 20004)


async def test_messages_belong_to_the_account_in_the_path() -> None:
    sim = SimulatedVendors()
    _, _, message = await twilio_call(sim, "POST", MESSAGES, SMS)
    other = f"/2010-04-01/Accounts/ACother/Messages/{message['sid']}.json"
    status, _, _ = await twilio_call(sim, "GET", other)
    assert status == 404
    _, _, page = await twilio_call(sim, "GET", "/2010-04-01/Accounts/ACother/Messages.json")
    assert page["messages"] == []


async def test_the_list_filters_by_to_and_pages() -> None:
    sim = SimulatedVendors()
    for to in ("+15550000001", "+15550000002", "+15550000001"):
        await twilio_call(sim, "POST", MESSAGES, {**SMS, "To": to})
    _, _, page = await twilio_call(sim, "GET", MESSAGES, query="To=%2B15550000001&PageSize=1")
    assert [m["to"] for m in page["messages"]] == ["+15550000001"]
    assert (page["page_size"], page["next_page_uri"]) == (1, None)
    status, _, body = await twilio_call(sim, "GET", MESSAGES, query="PageSize=0")
    assert (status, body["code"]) == (400, 20001)
