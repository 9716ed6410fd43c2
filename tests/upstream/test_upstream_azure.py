"""HttpUpstream to Azure OpenAI and to a named Anthropic-type provider, on a loopback server:
the deployment path, the api-version query and each type's credential header."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from outlay.upstream import Endpoint, HttpUpstream, UpstreamRequest

Serve = Callable[[Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[str]]


async def echo(request: web.Request) -> web.Response:
    return web.json_response({"path": request.path, "query": request.query_string,
                              "headers": dict(request.headers)})


async def _seen(upstream: HttpUpstream, request: UpstreamRequest) -> dict[str, Any]:
    response = await upstream.send(request)
    try:
        assert response.status == 200
        found: dict[str, Any] = json.loads(await response.read())
        return found
    finally:
        await response.close()


def _call(provider: str, path: str, *, query: str = "",
          deployment: str | None = None) -> UpstreamRequest:
    return UpstreamRequest(provider, "POST", path, {"Authorization": "Bearer olk_agent"},
                           b'{"model": "gpt-4o"}', False, query, deployment)


async def test_azure_goes_to_the_deployment_with_api_version_and_api_key(serve: Serve) -> None:
    base = await serve(echo)
    upstream = HttpUpstream({"azure": [Endpoint(base + "/", "az-key", style="azure",
                                                api_version="2024-10-21")]})
    try:
        seen = await _seen(upstream, _call("azure", "/chat/completions",
                                           deployment="prod-gpt4o"))
        assert seen["path"] == "/openai/deployments/prod-gpt4o/chat/completions"
        assert seen["query"] == "api-version=2024-10-21"
        assert seen["headers"]["api-key"] == "az-key"
        assert "Authorization" not in seen["headers"]
        # the agent's query goes on, without an api-version of its own
        seen = await _seen(upstream, _call("azure", "/embeddings", deployment="emb",
                                           query="api-version=1999-01-01&x=1"))
        assert (seen["path"], seen["query"]) == ("/openai/deployments/emb/embeddings",
                                                 "api-version=2024-10-21&x=1")
    finally:
        await upstream.close()


async def test_a_named_anthropic_provider_gets_x_api_key(serve: Serve) -> None:
    base = await serve(echo)
    upstream = HttpUpstream({"bedrock": [Endpoint(base, "k-ant", style="anthropic")]})
    try:
        seen = await _seen(upstream, _call("bedrock", "/v1/messages"))
        assert seen["headers"]["x-api-key"] == "k-ant"
        assert seen["headers"]["anthropic-version"] == "2023-06-01"
        assert "Authorization" not in seen["headers"]
    finally:
        await upstream.close()
