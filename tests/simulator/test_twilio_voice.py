"""The simulated Twilio Voice and phone-number APIs: a call and a number have Twilio's fields, a
number is bought once and released, and what Twilio refuses is refused with its codes."""

from __future__ import annotations

import re

import pytest

from outlay.simulator.vendors import SimulatedVendors
from outlay.upstream import UpstreamRequest

from .test_twilio import ACCOUNT, twilio_call

CALLS = f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
NUMBERS = f"/2010-04-01/Accounts/{ACCOUNT}/IncomingPhoneNumbers.json"
CALL = {"To": "+14155550100", "From": "+15017122661", "Url": "https://x.example/twiml"}


async def test_a_call_is_queued_with_twilios_fields() -> None:
    sim = SimulatedVendors()
    status, _, call = await twilio_call(sim, "POST", CALLS, {**CALL, "TimeLimit": "600"})
    assert status == 201
    assert re.fullmatch(r"CA[0-9a-f]{32}", call["sid"])
    assert (call["status"], call["direction"], call["to"], call["price"]) == (
        "queued", "outbound-api", "+14155550100", None)
    status, _, fetched = await twilio_call(sim, "GET", call["uri"])
    assert (status, fetched) == (200, call)


@pytest.mark.parametrize(("form", "code"), [
    ({"From": "+15017122661", "Url": "x"}, 21201),
    ({"To": "+14155550100", "Url": "x"}, 21213),
    ({"To": "4155550100", "From": "+15017122661", "Url": "x"}, 21217),
    ({"To": "+14155550100", "From": "+15017122661"}, 21205),
    ({**CALL, "TimeLimit": "14401"}, 21232),
    ({**CALL, "TimeLimit": "ten"}, 21232),
])
async def test_a_call_twilio_refuses_is_refused(form: dict[str, str], code: int) -> None:
    status, _, error = await twilio_call(SimulatedVendors(), "POST", CALLS, form)
    assert (status, error["code"]) == (400, code)


async def test_a_client_address_can_be_called() -> None:
    status, _, call = await twilio_call(SimulatedVendors(), "POST", CALLS,
                                        {**CALL, "To": "client:alice"})
    assert (status, call["to"]) == (201, "client:alice")


async def test_a_number_is_bought_once_listed_and_released() -> None:
    sim = SimulatedVendors()
    status, _, number = await twilio_call(sim, "POST", NUMBERS, {"PhoneNumber": "+14155550100"})
    assert status == 201
    assert re.fullmatch(r"PN[0-9a-f]{32}", number["sid"])
    assert (number["phone_number"], number["status"]) == ("+14155550100", "in-use")
    status, _, error = await twilio_call(sim, "POST", NUMBERS, {"PhoneNumber": "+14155550100"})
    assert (status, error["code"]) == (400, 21422)
    _, _, page = await twilio_call(sim, "GET", NUMBERS)
    assert [n["sid"] for n in page["incoming_phone_numbers"]] == [number["sid"]]
    response = await sim.send(UpstreamRequest("twilio", "DELETE", number["uri"], {}, b"", False))
    assert (response.status, await response.read()) == (204, b"")
    status, _, error = await twilio_call(sim, "GET", number["uri"])
    assert (status, error["code"]) == (404, 20404)


async def test_a_number_in_an_area_code_is_found() -> None:
    status, _, number = await twilio_call(SimulatedVendors(), "POST", NUMBERS,
                                          {"AreaCode": "415"})
    assert status == 201
    assert number["phone_number"].startswith("+1415")


@pytest.mark.parametrize(("form", "code"), [({}, 21452), ({"AreaCode": "41"}, 21452),
                                            ({"PhoneNumber": "415"}, 21421)])
async def test_a_number_twilio_cannot_sell_is_refused(form: dict[str, str], code: int) -> None:
    status, _, error = await twilio_call(SimulatedVendors(), "POST", NUMBERS, form)
    assert (status, error["code"]) == (400, code)


async def test_a_call_takes_only_its_methods() -> None:
    status, _, error = await twilio_call(SimulatedVendors(), "DELETE", CALLS)
    assert (status, error["code"]) == (405, 20004)
