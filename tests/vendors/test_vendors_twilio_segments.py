"""SMS segments counted the way Twilio counts them: GSM-7 160/153, UCS-2 70/67."""

from __future__ import annotations

import pytest

from outlay.vendors import Segments, sms_segments
from outlay.vendors.twilio_segments import GSM7_BASIC, GSM7_EXTENSION

EMOJI = "\U0001f600"  # two UTF-16 code units
CYRILLIC = "\u0436"  # one UTF-16 code unit, not GSM-7


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (159, 1), (160, 1), (161, 2), (305, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_single_and_concatenated_lengths(length: int, segments: int) -> None:
    assert sms_segments("a" * length) == Segments(segments, "GSM-7", length)


@pytest.mark.parametrize("char", sorted(GSM7_EXTENSION))
def test_extension_characters_take_two_septets(char: str) -> None:
    assert sms_segments(char * 80) == Segments(1, "GSM-7", 160)
    assert sms_segments(char * 81) == Segments(2, "GSM-7", 162)


def test_extension_table_is_twilios() -> None:
    assert set("^{}\\[~]|\u20ac\f") == GSM7_EXTENSION


def test_basic_set_is_the_gsm_table_without_escape() -> None:
    assert len(GSM7_BASIC) == 127
    assert "\x1b" not in GSM7_BASIC
    assert (
        set("@\u00a3$\u00a5\u00e8\u00e9\u00c7\u0394\u03a9\u00c4\u00df\u00a7\u00bf\u00e0")
        <= GSM7_BASIC
    )


@pytest.mark.parametrize("char", ["`", "\u00e7", "\t", "\u2019", "\u00e1", "\x1b"])
def test_characters_outside_gsm7_switch_to_ucs2(char: str) -> None:
    assert sms_segments("a" * 10 + char).encoding == "UCS-2"


def test_an_escape_pair_is_never_split_across_segments() -> None:
    # 152 + [{] + 152: 306 septets would fit two segments of 153 only by splitting the escape.
    body = "a" * 152 + "{" + "a" * 152
    assert sms_segments(body) == Segments(3, "GSM-7", 306)
    assert sms_segments("a" * 151 + "{" + "a" * 152) == Segments(2, "GSM-7", 305)


def test_one_emoji_makes_the_message_ucs2() -> None:
    assert sms_segments("Hello " + EMOJI) == Segments(1, "UCS-2", 8)


@pytest.mark.parametrize(
    ("length", "segments"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_ucs2_single_and_concatenated_lengths(length: int, segments: int) -> None:
    assert sms_segments(CYRILLIC * length) == Segments(segments, "UCS-2", length)


def test_emoji_are_two_code_units() -> None:
    assert sms_segments("a" * 68 + EMOJI) == Segments(1, "UCS-2", 70)
    assert sms_segments("a" * 69 + EMOJI) == Segments(2, "UCS-2", 71)
    assert sms_segments(EMOJI * 35) == Segments(1, "UCS-2", 70)
    assert sms_segments(EMOJI * 36) == Segments(2, "UCS-2", 72)


def test_gsm_characters_in_a_ucs2_message_take_one_unit() -> None:
    assert sms_segments("{" * 69 + CYRILLIC) == Segments(1, "UCS-2", 70)


def test_a_surrogate_pair_is_never_split_across_segments() -> None:
    body = CYRILLIC * 66 + EMOJI + CYRILLIC * 66
    assert sms_segments(body) == Segments(3, "UCS-2", 134)


def test_an_emoji_sequence_stays_in_one_segment() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # 8 code units
    flag = "\U0001f1ec\U0001f1e7"  # 4 code units
    assert sms_segments(family).units == 8
    # 66 + 8 would split the family at the segment boundary; it moves whole instead.
    assert sms_segments(CYRILLIC * 66 + family).count == 2
    assert sms_segments(CYRILLIC * 66 + family + CYRILLIC * 60).count == 3  # 134 units
    assert sms_segments(CYRILLIC * 65 + flag + CYRILLIC * 65).count == 3


def test_empty_body_is_one_segment() -> None:
    assert sms_segments("") == Segments(1, "GSM-7", 0)
