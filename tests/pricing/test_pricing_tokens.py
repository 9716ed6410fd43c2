"""The byte-based input bound's building blocks."""

from __future__ import annotations

import sys

import pytest

from outlay.policy.errors import BadRequest
from outlay.pricing import estimate
from outlay.pricing.tokens import PER_REQUEST_TOKENS, input_bound, prompt_tokens, text_bytes


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("abc", 3),
        ("é", 2),
        ("💸", 4),
        ("\ud800", 3),  # a lone surrogate from JSON still reaches the provider
        (None, 4),
        (True, 4),
        (False, 5),
        (12345, 5),
        (1.5, 3),
        ({"minimum": 100}, 10),
        (["ab", {"c": "d"}], 4),
    ],
)
def test_text_bytes(value: object, size: int) -> None:
    assert text_bytes(value) == size


def test_prompt_tokens_count_token_ids_once_and_text_by_bytes() -> None:
    assert prompt_tokens([[50256, 1000], [7]]) == 3
    assert prompt_tokens(["ab", "é"]) == 4
    assert prompt_tokens("hello") == 5


def test_sampling_fields_are_not_prompt() -> None:
    bare = {"model": "gpt-4o", "messages": []}
    tuned = {**bare, "temperature": 0.7, "max_tokens": 100, "metadata": {"k": "v" * 500}}
    assert input_bound("openai.chat", tuned, None) == input_bound("openai.chat", bare, None)
    assert input_bound("openai.chat", bare, None) == PER_REQUEST_TOKENS


def test_unknown_fields_count_in_case_they_reach_the_prompt() -> None:
    bare = {"model": "gpt-4o", "messages": []}
    extra = {**bare, "new_prompt_field": "x" * 100}
    assert input_bound("openai.chat", extra, None) >= input_bound("openai.chat", bare, None) + 100


def test_a_body_nested_past_the_stack_is_an_invalid_request() -> None:
    content: object = "x"
    for _ in range(sys.getrecursionlimit() + 10):
        content = [content]
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
    with pytest.raises(BadRequest, match="nested too deeply"):
        estimate("openai.chat", body, None)


def test_malformed_parts_are_counted_not_fatal() -> None:
    content = [{"type": ["image"], "text": "abc"}, {"type": {"x": 1}}, 3, None]
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
    assert input_bound("openai.chat", body, None) > PER_REQUEST_TOKENS + len("abc")
