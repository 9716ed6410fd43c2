"""The header values Outlay stores or compares are printable ASCII within a limit: checked
as pure functions, and how the agent's key is read from its headers."""

from __future__ import annotations

import base64

import pytest
from multidict import CIMultiDict

from outlay.gateway.header_values import (
    APPROVAL_ID,
    CREDENTIAL_MAX,
    IDEMPOTENCY_KEY_MAX,
    approval_id,
    credential,
    idempotency_key,
    printable_ascii,
)
from outlay.gateway.intake import agent_key
from outlay.policy.errors import BadRequest
from outlay.state.announcements import new_approval_id

# what aiohttp makes of bytes that are not UTF-8: b"\xff\xfe" arrives as two lone surrogates
NOT_UTF8 = b"\xff\xfe".decode("utf-8", "surrogateescape")
BAD_VALUES = {
    "not UTF-8": f"olk_{NOT_UTF8}",
    "non-ASCII": "ключ",
    "tab": "a\tb",
    "NUL": "a\x00b",
    "DEL": "a\x7fb",
    "line break": "a\r\nb",
    "Latin-1": "caf\xe9",
}


@pytest.mark.parametrize("value", ["", "a", " ~!\"#$%&'()*+,-./0-9:;<=>?@A-Z[\\]^_`a-z{|}"])
def test_printable_ascii_takes_0x20_to_0x7e(value: str) -> None:
    assert printable_ascii(value, 100)


def test_every_character_outside_0x20_to_0x7e_is_refused() -> None:
    for code in [*range(0x20), *range(0x7F, 0x100), 0xDC80, 0xDCFF, 0x2028, 0xFEFF]:
        assert not printable_ascii(f"ok{chr(code)}ok", 100), hex(code)
    for code in range(0x20, 0x7F):
        assert printable_ascii(chr(code), 1), hex(code)


def test_printable_ascii_counts_the_limit_in_characters() -> None:
    assert printable_ascii("x" * 8, 8)
    assert not printable_ascii("x" * 9, 8)


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_a_credential_that_is_not_printable_ascii_is_none(case: str) -> None:
    assert credential(BAD_VALUES[case]) is None


def test_a_credential_is_kept_up_to_its_limit() -> None:
    assert credential("olk_abc-DEF_123") == "olk_abc-DEF_123"
    assert credential("k" * CREDENTIAL_MAX) == "k" * CREDENTIAL_MAX
    assert credential("k" * (CREDENTIAL_MAX + 1)) is None


def test_the_approval_id_shape_is_the_one_approvals_are_made_with() -> None:
    for _ in range(20):
        assert APPROVAL_ID.fullmatch(new_approval_id())


def test_an_approval_id_absent_or_empty_is_none() -> None:
    assert approval_id(CIMultiDict()) is None
    assert approval_id(CIMultiDict({"X-Outlay-Approval": ""})) is None


def test_a_well_formed_approval_id_passes_whatever_the_header_case() -> None:
    made = new_approval_id()
    assert approval_id(CIMultiDict({"x-outlay-approval": made})) == made


@pytest.mark.parametrize("value", [
    f"apr_{NOT_UTF8}", "apr_0123456789abcdeg", "apr_0123456789ABCDEF", "apr_0123456789abcde",
    "apr_0123456789abcdef0", "0123456789abcdef", " apr_0123456789abcdef", "apr_\x00",
    "apr_" + "0" * 10_000, "ключ",
])
def test_a_malformed_approval_id_is_a_400_naming_the_header(value: str) -> None:
    with pytest.raises(BadRequest) as caught:
        approval_id(CIMultiDict({"X-Outlay-Approval": value}))
    error = caught.value
    assert (error.status, error.code) == (400, "invalid_request")
    assert error.details["param"] == "X-Outlay-Approval"
    assert "X-Outlay-Approval" in error.message
    assert value not in error.message  # never echoed: it may be any bytes


def test_an_idempotency_key_of_printable_ascii_passes_up_to_its_limit() -> None:
    assert idempotency_key(CIMultiDict()) is None
    assert idempotency_key(CIMultiDict({"Idempotency-Key": ""})) is None
    for value in ("order-42", "a b", "~" * IDEMPOTENCY_KEY_MAX):
        assert idempotency_key(CIMultiDict({"idempotency-key": value})) == value


@pytest.mark.parametrize("value", [*BAD_VALUES.values(), "k" * (IDEMPOTENCY_KEY_MAX + 1)])
def test_a_bad_idempotency_key_is_a_400_naming_the_header(value: str) -> None:
    with pytest.raises(BadRequest) as caught:
        idempotency_key(CIMultiDict({"Idempotency-Key": value}))
    error = caught.value
    assert (error.status, error.code) == (400, "invalid_request")
    assert error.details["param"] == "Idempotency-Key"
    assert "Idempotency-Key" in error.message
    assert str(IDEMPOTENCY_KEY_MAX) in error.message


# --- the agent's key from its headers --------------------------------------------------------


def basic(user: bytes, password: bytes) -> str:
    return "Basic " + base64.b64encode(user + b":" + password).decode()


@pytest.mark.parametrize(("headers", "key"), [
    ({"Authorization": "Bearer olk_a"}, "olk_a"),
    ({"authorization": "bearer   olk_a  "}, "olk_a"),
    ({"x-api-key": "olk_b"}, "olk_b"),
    ({"Authorization": basic(b"ACsid", b"olk_c")}, "olk_c"),
    ({"Authorization": "Token x", "x-api-key": "olk_d"}, "olk_d"),
    ({}, None),
    ({"Authorization": "Bearer "}, None),
    # curl -u olk_…: (Stripe's documented style): no password, the user name is the key
    ({"Authorization": basic(b"olk_u", b"")}, "olk_u"),
    ({"Authorization": basic(b"", b"")}, None),
])
def test_the_key_is_read_from_bearer_x_api_key_or_basic(
    headers: dict[str, str], key: str | None
) -> None:
    assert agent_key(CIMultiDict(headers)) == key


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_a_key_that_is_not_printable_ascii_is_no_key(case: str) -> None:
    value = BAD_VALUES[case]
    assert agent_key(CIMultiDict({"Authorization": f"Bearer {value}"})) is None
    assert agent_key(CIMultiDict({"x-api-key": value})) is None
    # a bad bearer is not passed over for an x-api-key: the agent meant the bearer
    assert agent_key(CIMultiDict({"Authorization": f"Bearer {value}",
                                  "x-api-key": "olk_b"})) is None


@pytest.mark.parametrize("value", [
    f"Basic {NOT_UTF8}",  # not ASCII: b64decode raises ValueError, not binascii.Error
    "Basic ключ",
    "Basic !!!!",
    basic(b"ACsid", b"olk_\xff\xfe"),  # base64 of bytes that are not UTF-8
    basic(b"ACsid", "пароль".encode()),  # UTF-8, but no key is ever non-ASCII
    basic(b"ACsid", b"olk_\x01"),
])
def test_a_bad_basic_credential_is_no_key(value: str) -> None:
    assert agent_key(CIMultiDict({"Authorization": value})) is None
