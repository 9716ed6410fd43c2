"""intercept_all and restore on the real openai and anthropic SDKs, over an in-process transport:
where clients send and as whom, the typed errors they raise, and exact restoration."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
import requests
from agents.tracing.processors import BackendSpanExporter

import outlay
from outlay.gateway.errors import error_answer
from outlay.policy import errors as gw

GW = "http://gw.test:8800"
KEY = "olk_intercepted"
MESSAGES = [{"role": "user", "content": "Say hello."}]
CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Hello."}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
           "content": [{"type": "text", "text": "Hello."}], "stop_reason": "end_turn",
           "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 2}}
# every attribute interception replaces: (owner, name)
PATCHED: list[tuple[type, str]] = [
    (openai.OpenAI, "__init__"), (openai.AsyncOpenAI, "__init__"),
    (openai.OpenAI, "_make_status_error"), (openai.AsyncOpenAI, "_make_status_error"),
    (anthropic.Anthropic, "__init__"), (anthropic.AsyncAnthropic, "__init__"),
    (anthropic.Anthropic, "_make_status_error"), (anthropic.AsyncAnthropic, "_make_status_error"),
    (requests.Session, "send"), (httpx.Client, "send"), (httpx.AsyncClient, "send"),
    (httpx2.Client, "send"), (httpx2.AsyncClient, "send"), (BackendSpanExporter, "export"),
]
_ABSENT = object()


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No provider settings from the environment, and nothing left intercepted."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ADMIN_KEY", "ANTHROPIC_API_KEY",
                 "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    yield
    outlay.restore()


class Recorder:
    """An in-process transport for the SDKs' httpx2 clients: records, answers `reply`."""

    def __init__(self, reply: Callable[[httpx2.Request], httpx2.Response]) -> None:
        self.sent: list[httpx2.Request] = []
        self.reply = reply

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.sent.append(request)
        return self.reply(request)

    def client(self) -> httpx2.Client:
        return httpx2.Client(transport=httpx2.MockTransport(self.handle))

    def async_client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handle))


def answer(body: dict[str, Any]) -> Callable[[httpx2.Request], httpx2.Response]:
    return lambda request: httpx2.Response(200, json=body)


def refusing(refusal: gw.OutlayError, flavor: Any) -> Callable[[httpx2.Request], httpx2.Response]:
    status, headers, body = error_answer(refusal, flavor, "req_refused")
    return lambda request: httpx2.Response(status, headers=headers, content=body)


def originals() -> dict[tuple[type, str], object]:
    return {(owner, name): vars(owner).get(name, _ABSENT) for owner, name in PATCHED}


# --- where clients send ---------------------------------------------------------------------


def test_an_openai_client_with_a_bogus_key_and_no_base_url_calls_the_gateway() -> None:
    outlay.intercept_all(key=KEY, base_url=GW)
    recorder = Recorder(answer(CHAT))

    with openai.OpenAI(api_key="sk-bogus", http_client=recorder.client(), max_retries=0) as client:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert completion.choices[0].message.content == "Hello."
    (sent,) = recorder.sent
    assert str(sent.url) == f"{GW}/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert "sk-bogus" not in repr(sent.headers.raw)


def test_the_environments_key_and_base_url_are_overridden_too(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://proxy.example/v1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "https://proxy.example")
    outlay.intercept_all(KEY, GW)

    with openai.OpenAI() as oa, anthropic.Anthropic() as an:
        assert (str(oa.base_url), oa.api_key) == (f"{GW}/v1/", KEY)
        assert (str(an.base_url).rstrip("/"), an.api_key) == (GW, KEY)


def test_no_key_at_all_is_needed_by_the_agent() -> None:
    """Without interception the SDK refuses to start with no credentials."""
    with pytest.raises(openai.OpenAIError):
        openai.OpenAI()
    outlay.intercept_all(KEY, GW)
    with openai.OpenAI() as client:
        assert client.api_key == KEY


async def test_async_openai_calls_the_gateway() -> None:
    outlay.intercept_all(KEY, GW)
    recorder = Recorder(answer(CHAT))

    async with openai.AsyncOpenAI(api_key="sk-bogus", http_client=recorder.async_client(),
                                  max_retries=0) as client:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    (sent,) = recorder.sent
    assert str(sent.url) == f"{GW}/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("credential", [{"api_key": "sk-ant-bogus"},
                                        {"auth_token": "bearer-bogus"}, {}])
def test_an_anthropic_client_calls_the_gateways_messages_route(
        credential: dict[str, str]) -> None:
    outlay.intercept_all(KEY, GW + "/")
    recorder = Recorder(answer(MESSAGE))

    with anthropic.Anthropic(**credential, http_client=recorder.client(),
                             max_retries=0) as client:
        message = client.messages.create(model="claude-haiku-4-5", max_tokens=16,
                                         messages=MESSAGES)

    assert message.content[0].text == "Hello."
    (sent,) = recorder.sent
    assert str(sent.url) == f"{GW}/v1/messages"
    assert KEY in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "")[7:])
    assert "bogus" not in repr(sent.headers.raw)


async def test_async_anthropic_calls_the_gateway() -> None:
    outlay.intercept_all(KEY, GW)
    recorder = Recorder(answer(MESSAGE))

    async with anthropic.AsyncAnthropic(http_client=recorder.async_client(),
                                        max_retries=0) as client:
        await client.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=MESSAGES)

    assert str(recorder.sent[0].url) == f"{GW}/v1/messages"


def test_an_agents_own_subclass_is_routed_but_the_sdks_cloud_variants_are_not() -> None:
    class AgentClient(openai.OpenAI):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)

    outlay.intercept_all(KEY, GW)

    with AgentClient(api_key="sk-x") as own, openai.AzureOpenAI(
            api_key="azure-key", azure_endpoint="https://example-resource.openai.azure.com",
            api_version="2024-10-21") as azure:
        assert str(own.base_url) == f"{GW}/v1/"
        assert "openai.azure.com" in str(azure.base_url)
        assert azure.api_key == "azure-key"


# --- typed errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(("refusal", "typed", "sdk_error"), [
    (gw.BudgetExceeded("budget_exceeded", "Budget exceeded.", scope="key:k", period="day",
                       spent_usd="0", cap_usd="0.000001", resets_at="2026-07-01T00:00:00Z"),
     outlay.BudgetExceeded, openai.APIStatusError),
    (gw.RateLimited("rate_limit_exceeded", "Slow down.", scope="key:k", limit=1, retry_after=9),
     outlay.RateLimited, openai.RateLimitError),
    (gw.NotAllowed("model_not_allowed", "No.", allowed=["gpt-4o-mini"]),
     outlay.ModelNotAllowed, openai.PermissionDeniedError),
    (gw.AuthError("key_revoked", "Revoked."), outlay.KeyRevoked, openai.AuthenticationError),
    (gw.ApprovalRequired("Approve.", 0, approval_id="apr_1"), outlay.ApprovalRequired,
     openai.PermissionDeniedError),
], ids=lambda v: getattr(v, "code", ""))
def test_openai_refusals_are_outlay_errors_and_the_sdks_own(
        refusal: gw.OutlayError, typed: type[outlay.OutlayError],
        sdk_error: type[Exception]) -> None:
    outlay.intercept_all(KEY, GW)
    recorder = Recorder(refusing(refusal, "openai"))

    with openai.OpenAI(http_client=recorder.client(), max_retries=0) as client, \
            pytest.raises(typed) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    error = raised.value
    assert isinstance(error, sdk_error)
    assert isinstance(error, openai.APIStatusError)
    assert (error.status, error.code, error.request_id) == (refusal.status, refusal.code,
                                                            "req_refused")
    assert error.status_code == refusal.status  # the SDK's own attributes are kept
    assert error.response.status_code == refusal.status
    assert refusal.message in str(error)


def test_an_anthropic_refusal_is_both_and_keeps_its_details() -> None:
    outlay.intercept_all(KEY, GW)
    refusal = gw.RateLimited("token_rate_limit_exceeded", "Too many tokens.", scope="agent:a",
                             limit=1000, retry_after=7, window="tpm", window_s=60,
                             reset_unix=1_800_000_000)
    recorder = Recorder(refusing(refusal, "anthropic"))

    with anthropic.Anthropic(http_client=recorder.client(), max_retries=0) as client, \
            pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model="claude-haiku-4-5", max_tokens=16, messages=MESSAGES)

    error = raised.value
    assert isinstance(error, outlay.RateLimited)
    assert (error.retry_after, error.limit, error.scope) == (7.0, 1000, "agent:a")
    assert error.code == "token_rate_limit_exceeded"


async def test_async_clients_raise_typed_errors_too() -> None:
    outlay.intercept_all(KEY, GW)
    refusal = gw.BudgetExceeded("budget_exceeded", "Budget exceeded.", cap_usd="5")
    recorder = Recorder(refusing(refusal, "anthropic"))

    async with anthropic.AsyncAnthropic(http_client=recorder.async_client(),
                                        max_retries=0) as client:
        with pytest.raises(outlay.BudgetExceeded) as raised:
            await client.messages.create(model="claude-haiku-4-5", max_tokens=16,
                                         messages=MESSAGES)
    assert isinstance(raised.value, anthropic.APIStatusError)


def test_errors_that_are_not_refusals_stay_the_sdks_alone() -> None:
    outlay.intercept_all(KEY, GW)
    recorder = Recorder(lambda request: httpx2.Response(
        404, json={"error": {"message": "No such model.", "type": "invalid_request_error",
                             "code": "model_not_found"}}))

    with openai.OpenAI(http_client=recorder.client(), max_retries=0) as client, \
            pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-9", messages=MESSAGES)

    assert type(raised.value) is openai.NotFoundError
    assert not isinstance(raised.value, outlay.OutlayError)


def test_one_kind_of_refusal_gets_one_class() -> None:
    outlay.intercept_all(KEY, GW)
    recorder = Recorder(refusing(gw.AuthError("key_revoked", "Revoked."), "openai"))
    raised = []
    with openai.OpenAI(http_client=recorder.client(), max_retries=0) as client:
        for _ in range(2):
            with pytest.raises(outlay.KeyRevoked) as caught:
                client.models.list()
            raised.append(caught.value)
    assert type(raised[0]) is type(raised[1])


# --- restore and idempotency ---------------------------------------------------------------


def test_restore_puts_back_every_attribute_exactly() -> None:
    before = originals()
    resolved = {(owner, name): getattr(owner, name) for owner, name in PATCHED}

    outlay.intercept_all(KEY, GW)
    for owner, name in PATCHED:
        replaced = vars(owner)[name]
        assert replaced is not before[(owner, name)]
        assert replaced.__wrapped__ is resolved[(owner, name)]
    outlay.restore()

    assert originals() == before
    for (owner, name), value in before.items():
        if value is _ABSENT:
            assert name not in vars(owner)  # anthropic's inherited _make_status_error
        else:
            assert vars(owner)[name] is value
    assert anthropic.Anthropic._make_status_error is anthropic._base_client.BaseClient.__dict__[
        "_make_status_error"]


def test_intercepting_twice_wraps_once_and_uses_the_latest_settings() -> None:
    before = originals()
    outlay.intercept_all("olk_first", "http://first.test")
    outlay.intercept_all(KEY, GW)

    for owner, name in PATCHED:
        wrapper = vars(owner)[name]
        assert not hasattr(wrapper.__wrapped__, "__wrapped__"), (owner, name)
    with openai.OpenAI() as client:
        assert (str(client.base_url), client.api_key) == (f"{GW}/v1/", KEY)

    outlay.restore()
    outlay.restore()  # a second restore is a no-op
    assert originals() == before


def test_after_restore_new_clients_go_where_they_always_did() -> None:
    outlay.intercept_all(KEY, GW)
    during = openai.OpenAI(api_key="sk-x")
    outlay.restore()

    with during, openai.OpenAI(api_key="sk-x") as after, \
            anthropic.Anthropic(api_key="sk-ant-x") as an:
        assert str(during.base_url) == f"{GW}/v1/"  # made while intercepted: stays
        assert (str(after.base_url), after.api_key) == ("https://api.openai.com/v1/", "sk-x")
        assert str(an.base_url).rstrip("/") == "https://api.anthropic.com"


def test_missing_libraries_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    before = originals()
    for name in ("openai", "anthropic", "requests"):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError

    outlay.intercept_all(KEY, GW)

    assert "send" in vars(httpx.Client)
    assert vars(httpx.Client)["send"] is not before[(httpx.Client, "send")]
    for owner, name in PATCHED:
        if owner.__module__.partition(".")[0] in ("openai", "anthropic", "requests"):
            assert vars(owner).get(name, _ABSENT) is before[(owner, name)]
    outlay.restore()
    assert originals() == before


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"key": "", "base_url": GW}, "key"),
    ({"key": KEY, "base_url": "127.0.0.1:8800"}, "base_url"),
    ({"key": KEY, "base_url": "ftp://gw.test"}, "base_url"),
    ({"key": KEY, "base_url": f"{GW}/?x=1"}, "base_url"),
    ({"key": KEY, "base_url": GW, "vendors": {"https://api.acme.example": "acme"}}, "host"),
    ({"key": KEY, "base_url": GW, "vendors": {"api.acme.example": "ac/me"}}, "vendor"),
])
def test_bad_settings_are_refused_and_nothing_is_patched(
        kwargs: dict[str, Any], match: str) -> None:
    before = originals()
    with pytest.raises(ValueError, match=match):
        outlay.intercept_all(**kwargs)
    assert originals() == before
