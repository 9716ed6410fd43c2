"""What both simulated providers share: token counts, the canned reply, SSE framing, errors.

Token rules, relied on by tests elsewhere (they keep usage below any byte-based upper bound):
- a chat-like message (chat message, system prompt, instructions, Responses input item)
  counts ceil(utf8_bytes(text) / 4) + 3, where text is every string in it except role/type;
- a raw prompt or embedding input counts ceil(utf8_bytes / 4); a token-id list counts its length;
- the reply is REPLY_TOKENS tokens of a fixed sentence, cut to the caller's output limit;
  a model named ``sim-max…`` writes (and bills) every output token the request allows, its
  limit, or MAX_DEFAULT_OUTPUT_TOKENS when it names none (a mock that tests bounds).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

REPLY_SENTENCE = "This is a simulated reply from the Outlay gateway's built-in provider."
REPLY_TOKENS = 24
MESSAGE_OVERHEAD_TOKENS = 3
BREAK_MODEL = "sim-break"
MAX_MODEL_PREFIX = "sim-max"
# What a ``sim-max`` model writes when the request names no limit: a large model's maximum
MAX_DEFAULT_OUTPUT_TOKENS = 128_000
_ERROR_MODEL = re.compile(r"sim-error-([45]\d\d)")
# Keys whose values name the structure rather than carry text the model reads.
_STRUCTURAL_KEYS = frozenset({"role", "type"})


class SimRejection(Exception):
    """A request the simulated provider refuses, rendered in the provider's error shape."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


@dataclass(frozen=True)
class SimContext:
    """Where a simulated provider gets ids and timestamps, so they are per instance."""

    new_id: Callable[[str], str]
    now: Callable[[], int]
    # the service tier each provider's account runs a request for `auto` in
    tiers: Mapping[str, str] = field(default_factory=dict)
    # what a provider keeps between calls: background responses by id
    stored: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SimReply:
    """A complete simulated answer.

    ``break_after`` simulates a dropped connection: None keeps the answer whole, 0 drops it
    after the request was sent but before any answer, n > 0 drops it after n body chunks.
    """

    status: int
    headers: Mapping[str, str]
    chunks: tuple[bytes, ...]
    break_after: int | None = None


@dataclass(frozen=True)
class CannedReply:
    """The reply text as the tokens it is streamed in."""

    pieces: tuple[str, ...]
    truncated: bool = False
    unshown: int = 0  # tokens billed beyond the pieces (a ``sim-max`` model's)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def output_tokens(self) -> int:
        return len(self.pieces) + self.unshown


def canned_reply(limit: int | None, model: str = "", default: int | None = None
                 ) -> CannedReply:
    """REPLY_TOKENS words of the fixed sentence, repeated, cut to ``limit`` tokens if lower;
    for a ``sim-max`` model, every token allowed (``limit``, else ``default``, else
    MAX_DEFAULT_OUTPUT_TOKENS), billed though only the first REPLY_TOKENS are sent."""
    words = REPLY_SENTENCE.split()
    count = REPLY_TOKENS if limit is None else min(limit, REPLY_TOKENS)
    pieces = tuple((" " if i else "") + words[i % len(words)] for i in range(count))
    if model.startswith(MAX_MODEL_PREFIX):
        most = limit if limit is not None else default or MAX_DEFAULT_OUTPUT_TOKENS
        return CannedReply(pieces, truncated=True, unshown=max(0, most - len(pieces)))
    return CannedReply(pieces, truncated=limit is not None and limit < REPLY_TOKENS)


def text_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / 4)


def message_tokens(message: object) -> int:
    return text_tokens(_text_of(message)) + MESSAGE_OVERHEAD_TOKENS


def raw_input_tokens(value: object) -> int:
    """Tokens of a prompt or embedding input item: a string, or a list of token ids."""
    if isinstance(value, str):
        return text_tokens(value)
    if isinstance(value, list):
        return len(value)
    return 0


def _text_of(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_text_of(item) for item in value)
    if isinstance(value, dict):
        return "".join(_text_of(v) for k, v in value.items() if k not in _STRUCTURAL_KEYS)
    return ""


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SimRejection(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(parsed, dict):
        raise SimRejection(400, "The request body must be a JSON object.")
    return parsed


def require_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise SimRejection(400, "you must provide a model parameter", "model")
    return model


def optional_limit(body: Mapping[str, Any], *names: str, minimum: int = 1) -> int | None:
    """The first output limit present among ``names``; rejected when not an int >= minimum."""
    for name in names:
        if body.get(name) is None:
            continue
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SimRejection(
                400, f"Invalid '{name}': expected an integer >= {minimum}, got {value!r}.", name
            )
        return value
    return None


def forced_error_status(model: str) -> int | None:
    """``sim-error-NNN`` asks for an HTTP NNN (4xx or 5xx) answer."""
    match = _ERROR_MODEL.fullmatch(model)
    return int(match.group(1)) if match else None


def dump(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sse_data(obj: object) -> bytes:
    return b"data: " + dump(obj) + b"\n\n"


def sse_event(name: str, obj: object) -> bytes:
    return f"event: {name}\n".encode() + sse_data(obj)


def json_reply(status: int, obj: object, headers: Mapping[str, str]) -> SimReply:
    return SimReply(status, {"Content-Type": "application/json", **headers}, (dump(obj),))


def sse_reply(events: list[bytes], headers: Mapping[str, str], *, broken: bool) -> SimReply:
    """A stream; when ``broken`` it is cut half-way, after the usage-bearing opening events."""
    return SimReply(
        200,
        {
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            **headers,
        },
        tuple(events),
        break_after=max(1, len(events) // 2) if broken else None,
    )


def maybe_broken(reply: SimReply, broken: bool) -> SimReply:
    """The same answer, lost after the request was sent when ``broken``."""
    return replace(reply, break_after=0) if broken else reply
