"""The retry helper: waits what Retry-After says, retries rate limits only (never a 402), and
gives up with the last error; sleeping is injected, so nothing here waits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest

import outlay

RESULT = {"id": "chatcmpl-1"}


def limited(retry_after: float | None = 2) -> outlay.RateLimited:
    details = {} if retry_after is None else {"retry_after": retry_after}
    return outlay.RateLimited("Rate limit reached.", details={"limit": 1, **details})


class Script:
    """A callable that raises the given errors in turn, then returns RESULT."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, str]:
        self.calls.append((args, kwargs))
        if self.errors:
            raise self.errors.pop(0)
        return RESULT

    async def call_async(self, *args: Any, **kwargs: Any) -> dict[str, str]:
        return self(*args, **kwargs)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.append(seconds)


def test_waits_the_retry_after_of_each_refusal_then_returns() -> None:
    fn, sleeps = Script(limited(3), limited(1)), Sleeps()

    result = outlay.retry(fn, "gpt-4o-mini", attempts=3, sleep=sleeps, max_tokens=5)

    assert result is RESULT
    assert sleeps == [3.0, 1.0]
    assert fn.calls == [(("gpt-4o-mini",), {"max_tokens": 5})] * 3


@pytest.mark.parametrize("error", [
    outlay.BudgetExceeded("Budget exceeded.", details={"retry_after": 1}),
    outlay.ModelNotAllowed("Not allowed."),
    outlay.KeyRevoked("Revoked."),
    outlay.KeyExpired("Expired."),
    outlay.ApprovalRequired("Approve first.", details={"approval_id": "apr_1"}),
    outlay.InvalidRequest("Bad."),
    ValueError("a bug in the agent"),
], ids=lambda e: type(e).__name__)
def test_never_retries_anything_but_a_rate_limit(error: Exception) -> None:
    fn, sleeps = Script(error), Sleeps()

    with pytest.raises(type(error)) as raised:
        outlay.retry(fn, attempts=5, sleep=sleeps)

    assert raised.value is error
    assert len(fn.calls) == 1
    assert sleeps == []


def test_gives_up_after_the_attempts_with_the_last_error() -> None:
    errors = [limited(1) for _ in range(4)]
    fn, sleeps = Script(*errors), Sleeps()

    with pytest.raises(outlay.RateLimited) as raised:
        outlay.retry(fn, attempts=3, sleep=sleeps)

    assert raised.value is errors[2]
    assert len(fn.calls) == 3
    assert sleeps == [1.0, 1.0]


def test_one_attempt_means_no_retry() -> None:
    fn, sleeps = Script(limited(1)), Sleeps()
    with pytest.raises(outlay.RateLimited):
        outlay.retry(fn, attempts=1, sleep=sleeps)
    assert (len(fn.calls), sleeps) == (1, [])


def test_a_wait_longer_than_max_wait_is_not_taken() -> None:
    """Retrying before the window frees would only be refused again."""
    fn, sleeps = Script(limited(90)), Sleeps()

    with pytest.raises(outlay.RateLimited):
        outlay.retry(fn, attempts=3, max_wait_s=30, sleep=sleeps)

    assert (len(fn.calls), sleeps) == (1, [])


def test_without_retry_after_it_backs_off_with_jitter_within_bounds() -> None:
    rounds = [Sleeps() for _ in range(20)]
    for sleeps in rounds:
        fn = Script(limited(None), limited(None), limited(None))
        assert outlay.retry(fn, attempts=4, max_wait_s=0.75, sleep=sleeps) is RESULT
        assert len(sleeps) == 3
        first, second, third = sleeps
        assert 0 <= first <= 0.5
        assert 0 <= second <= 0.75  # 1.0, capped by max_wait_s
        assert 0 <= third <= 0.75
    # jitter: twenty rounds do not all wait the same
    assert len({tuple(s) for s in rounds}) > 1


def sdk_429(retry_after: str | None) -> openai.RateLimitError:
    """The openai SDK's own 429 with no Outlay code in it, as any upstream may send."""
    headers = {"retry-after": retry_after} if retry_after else {}
    transport = httpx2.MockTransport(lambda request: httpx2.Response(
        429, headers=headers, json={"error": {"message": "slow down", "type": "requests"}}))
    with openai.OpenAI(api_key="sk-x", base_url="http://upstream.test/v1", max_retries=0,
                       http_client=httpx2.Client(transport=transport)) as client, \
            pytest.raises(openai.RateLimitError) as raised:
        client.models.list()
    return raised.value


def test_an_sdks_own_429_is_retried_after_its_retry_after_header() -> None:
    fn, sleeps = Script(sdk_429("4")), Sleeps()

    assert outlay.retry(fn, sleep=sleeps) is RESULT
    assert sleeps == [4.0]


def test_an_sdks_own_402_is_never_retried() -> None:
    sent: list[httpx2.Request] = []

    def refuse(request: httpx2.Request) -> httpx2.Response:
        sent.append(request)
        return httpx2.Response(402, headers={"x-should-retry": "false"}, json={
            "error": {"message": "Budget exceeded.", "code": "budget_exceeded"}})

    sleeps = Sleeps()
    with openai.OpenAI(api_key="olk_x", base_url="http://gw.test/v1", max_retries=0,
                       http_client=httpx2.Client(transport=httpx2.MockTransport(refuse))
                       ) as client, pytest.raises(openai.APIStatusError) as raised:
        outlay.retry(client.models.list, attempts=5, sleep=sleeps)

    assert raised.value.status_code == 402
    assert (len(sent), sleeps) == (1, [])


async def test_aretry_waits_with_the_async_sleep_and_returns() -> None:
    fn, sleeps = Script(limited(2), sdk_429("1")), Sleeps()

    result = await outlay.aretry(fn.call_async, "a", attempts=3, sleep=sleeps.async_sleep, n=1)

    assert result is RESULT
    assert sleeps == [2.0, 1.0]
    assert fn.calls == [(("a",), {"n": 1})] * 3


async def test_aretry_never_retries_a_402_and_gives_up_after_its_attempts() -> None:
    budget = outlay.BudgetExceeded("Budget exceeded.")
    refused, sleeps = Script(budget), Sleeps()
    with pytest.raises(outlay.BudgetExceeded):
        await outlay.aretry(refused.call_async, sleep=sleeps.async_sleep)
    assert (len(refused.calls), sleeps) == (1, [])

    errors = [limited(1) for _ in range(3)]
    exhausted = Script(*errors)
    with pytest.raises(outlay.RateLimited) as raised:
        await outlay.aretry(exhausted.call_async, attempts=2, sleep=sleeps.async_sleep)
    assert raised.value is errors[1]
    assert (len(exhausted.calls), sleeps) == (2, [1.0])


@pytest.mark.parametrize("call", [
    lambda: outlay.retry(Script(), attempts=0),
    lambda: outlay.retry(Script(), max_wait_s=-1),
])
def test_settings_are_checked(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=r"attempts|max_wait_s"):
        call()


def test_a_loop_detected_refusal_is_never_retried() -> None:
    """Repeating the same request is the loop the guard stopped (SPEC §2.10)."""
    loop = outlay.RateLimited("The same request, again.", code="loop_detected",
                              details={"retry_after": 30, "repeats": 20, "window_s": 60})
    fn, sleeps = Script(loop), Sleeps()
    with pytest.raises(outlay.RateLimited) as raised:
        outlay.retry(fn, attempts=5, sleep=sleeps)
    assert raised.value is loop
    assert (len(fn.calls), sleeps) == (1, [])
