"""How many billed SMS segments a message body takes, counted the way Twilio counts them.

A body of GSM-7 characters (3GPP TS 23.038 basic set and extension table) fits 160 septets in
one segment; the extension characters take two septets (an escape and the character). Any
other character makes the whole message UCS-2: 70 UTF-16 code units in one segment, so an emoji
outside the BMP takes two. A longer message is split into segments of 153 septets or 67 code
units (the rest carries the concatenation header), and a character that does not fit whole in
what is left of a segment moves to the next: an escape pair, a surrogate pair or an emoji
sequence is never split across two segments.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_GSM7_SINGLE, _GSM7_PART = 160, 153
_UCS2_SINGLE, _UCS2_PART = 70, 67

_ZWJ = "\u200d"
_CR, _LF = "\r", "\n"


@dataclass(frozen=True)
class Segments:
    count: int
    encoding: Literal["GSM-7", "UCS-2"]
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2


def sms_segments(body: str) -> Segments:
    """The segments `body` is sent as; an empty body still sends one segment."""
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in body):
        weights = [2 if char in GSM7_EXTENSION else 1 for char in body]
        return Segments(_pack(weights, _GSM7_SINGLE, _GSM7_PART), "GSM-7", sum(weights))
    weights = [_utf16_units(cluster) for cluster in _clusters(body)]
    return Segments(_pack(weights, _UCS2_SINGLE, _UCS2_PART), "UCS-2", sum(weights))


def _pack(weights: list[int], single: int, part: int) -> int:
    """Segments needed for units of the given weights, each kept whole within a segment."""
    if sum(weights) <= single:
        return 1
    count, room = 1, part
    for weight in weights:
        if weight > room and room < part:
            count += 1
            room = part
        # Only a cluster longer than a whole segment is split; it fills segments in turn.
        while weight > room:
            weight -= room
            count += 1
            room = part
        room -= weight
    return count


def _utf16_units(text: str) -> int:
    return sum(2 if ord(char) > 0xFFFF else 1 for char in text)


def _clusters(text: str) -> list[str]:
    """User-perceived characters, close enough to Unicode grapheme clusters for segmenting.

    Joins combining marks, variation selectors, emoji skin-tone modifiers and tags to their
    base, ZWJ sequences (family emoji), regional-indicator pairs (flags) and CR LF.
    """
    clusters: list[str] = []
    for char in text:
        if clusters and _joins(clusters[-1], char):
            clusters[-1] += char
        else:
            clusters.append(char)
    return clusters


def _joins(previous: str, char: str) -> bool:
    code = ord(char)
    if char == _ZWJ or previous.endswith(_ZWJ) or (previous == _CR and char == _LF):
        return True
    if unicodedata.category(char) in ("Mn", "Me", "Mc"):
        return True
    if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:  # variation selectors
        return True
    if 0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F:  # skin tones, tag characters
        return True
    # A flag is two regional indicators; a third starts the next flag.
    return _is_regional(char) and len(previous) == 1 and _is_regional(previous)


def _is_regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF
