"""The LLM routes Outlay serves: which pricing route, provider and upstream path each path is."""

from __future__ import annotations

from dataclasses import dataclass

from outlay.gateway.errors import Flavor


@dataclass(frozen=True)
class Route:
    kind: str  # the pricing route: "openai.chat", "anthropic.messages", …
    provider: str  # the default provider; a call's own is its model's (upstream/providers.py)
    path: str  # provider-relative upstream path

    @property
    def flavor(self) -> Flavor:
        """The API shape of the route, whichever provider a call on it goes to."""
        return "anthropic" if self.kind.startswith("anthropic.") else "openai"


ROUTES = {
    "/v1/chat/completions": Route("openai.chat", "openai", "/chat/completions"),
    "/v1/completions": Route("openai.completions", "openai", "/completions"),
    "/v1/embeddings": Route("openai.embeddings", "openai", "/embeddings"),
    "/v1/responses": Route("openai.responses", "openai", "/responses"),
    "/v1/messages": Route("anthropic.messages", "anthropic", "/v1/messages"),
    "/v1/messages/count_tokens": Route(
        "anthropic.count_tokens", "anthropic", "/v1/messages/count_tokens"),
}
