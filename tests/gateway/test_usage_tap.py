"""The usage tap: what a stream reports, and a bound on the output it showed, read from the
bytes as they pass (split anywhere)."""

from __future__ import annotations

import orjson

from outlay.gateway.usage_tap import KEPT_BYTES, UsageTap, error_body, text_bytes


def event(obj: object, name: str | None = None) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


def test_output_text_is_counted_as_written() -> None:
    assert text_bytes(b'{"delta":{"content":"h\\u00e9\\"x"}}') == len('h\\u00e9\\"x')
    assert text_bytes(b'{"delta":{"content":"\\\\"},"x":"y"}') == 2  # an escaped backslash
    assert text_bytes(b'{"type":"text_delta","text":"abc"}{"thinking":"de"}') == 5
    assert text_bytes(b'{"delta":"cut sho') == len("cut sho")  # unfinished: all of it
    assert text_bytes(b'{"model":"gpt","usage":{"output_tokens":5}}') == 0
    # JSON written with spaces (json.dumps's default) is counted as well as compact JSON
    assert text_bytes(b'{"delta": {"type": "text_delta", "text": " w1"}}') == 3
    assert text_bytes(b'{"content" : "ab", "refusal":\t"c"}') == 3
    # a field name inside a string is text, not a field
    assert text_bytes(b'{"content":"say \\"text\\": \\"x\\""}') == len(
        'say \\"text\\": \\"x\\"')


def test_every_escape_is_at_least_as_long_as_its_utf8() -> None:
    for text in ("plain", "é", "東京", "💸", "\n\t\"\\", "\u0000"):
        raw = orjson.dumps({"content": text})
        assert text_bytes(raw) >= len(text.encode("utf-8"))


def test_a_stream_split_anywhere_counts_the_same() -> None:
    stream = b"".join(event({"choices": [{"delta": {"content": word}}]})
                      for word in ("Hel", "lo", " wörld"))
    stream += event({"error": {"message": "overloaded", "type": "server_error"}})
    for cut in range(1, len(stream)):
        tap = UsageTap()
        tap.feed(stream[:cut])
        tap.feed(stream[cut:])
        assert tap.output_bytes() == len("Hello wörld".encode())
        assert tap.failed
        assert not tap.finished


def test_past_what_is_kept_every_byte_counts() -> None:
    tap = UsageTap()
    big = event({"choices": [{"delta": {"content": "x" * KEPT_BYTES}}]})
    tap.feed(event({"choices": [{"delta": {"content": "ab"}}]}))
    tap.feed(big)
    # the text kept, and every byte of what was not (a bound on the text it carried)
    assert 2 + KEPT_BYTES < tap.output_bytes() <= 2 + len(big)


def test_anthropic_errors_and_tiers_are_read() -> None:
    tap = UsageTap()
    tap.feed(event({"type": "message_start", "message": {"usage": {
        "input_tokens": 30, "output_tokens": 1, "service_tier": "priority"}}}, "message_start"))
    tap.feed(event({"type": "error", "error": {"type": "overloaded_error"}}, "error"))
    assert (tap.failed, tap.finished, tap.tier) == (True, False, "priority")
    assert tap.usage["input_tokens"] == 30


def test_error_bodies() -> None:
    assert error_body({"error": {"message": "x"}})
    assert error_body({"type": "error", "error": {"type": "overloaded_error"}})
    assert not error_body({"id": "resp_1", "error": None, "usage": {}})
