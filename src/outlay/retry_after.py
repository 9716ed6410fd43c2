"""`Retry-After` read strictly (RFC 9110 §10.2.3): delay-seconds in ASCII digits, or an
HTTP-date. Anything else is no answer at all and the caller's own backoff applies; nothing
a peer sends can make it raise. Pure: no I/O; the caller gives the time.

`str.isdigit()` and `int()` take any Unicode digit ('²', '٣'), and `float()` takes '1e3',
'nan' and 'inf': none of that is delay-seconds.
"""

from __future__ import annotations

import re
from datetime import UTC
from email.utils import parsedate_to_datetime

# More digits than this is "a very long time" already (over 300 years): not converted, so
# a header of a million digits costs nothing.
MAX_DIGITS = 10
LONGEST_S = 10**MAX_DIGITS - 1
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_OWS = " \t"  # optional whitespace around a field value


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds from `now_s` (Unix time) that `value` asks to wait, or None if unusable.

    A date in the past is 0; a delay longer than LONGEST_S is LONGEST_S, for the caller to
    bound further.
    """
    if value is None:
        return None
    text = value.strip(_OWS)
    if not text.isascii():  # also refuses the surrogates of bytes that are not UTF-8
        return None
    if _DIGITS.fullmatch(text):
        digits = text.lstrip("0")
        return float(LONGEST_S if len(digits) > MAX_DIGITS else int(digits or "0"))
    return _until(text, now_s)


def _until(text: str, now_s: float) -> float | None:
    """Seconds from `now_s` to the HTTP-date `text`, or None if it is none."""
    try:
        moment = parsedate_to_datetime(text)
        if moment.tzinfo is None:  # asctime's form names no zone: HTTP-dates are all GMT
            moment = moment.replace(tzinfo=UTC)
        return min(max(0.0, moment.timestamp() - now_s), float(LONGEST_S))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
