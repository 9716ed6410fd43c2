"""What the simulated Twilio's APIs share: its error object and its form parameters."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs

API_VERSION = "2010-04-01"


class TwilioError(Exception):
    """A request Twilio refuses, rendered as its error object."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def form_of(raw: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(raw.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise TwilioError(400, 20001, "The request body is not UTF-8 form data.") from None


def first(form: Mapping[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None
