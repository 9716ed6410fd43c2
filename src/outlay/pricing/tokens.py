"""An upper bound on an LLM request's input tokens, read from its JSON body without a tokenizer.

BPE tokenizers (tiktoken, Anthropic's) never emit more tokens than the UTF-8 bytes they read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from outlay.pricing.table import ModelPrice

# Chat templates add a few special tokens per message and per request.
PER_REQUEST_TOKENS = 16
PER_MESSAGE_TOKENS = 8
# Providers render tool definitions with framing text of their own around the JSON's words.
OPENAI_TOOLS_TOKENS = 64
PER_TOOL_TOKENS = 16
# Anthropic adds a hidden tool-use system prompt (346 tokens on Claude 4) whenever tools are
# given, and more for each client tool it defines itself (computer use ~1,200, text editor 700).
ANTHROPIC_TOOLS_TOKENS = 512
ANTHROPIC_BUILTIN_TOOL_TOKENS = 2048
# Images are billed by size, not by the bytes of their URL or base64 data. The largest bill
# among the shipped models is under 4,096 tokens (gpt-4.1-nano: 1,536 patches x 2.46; gpt-4o:
# 85 + 8 tiles x 170; Claude: ~1,600 before downscaling) except gpt-4o-mini, which counts
# 2,833 + 8 tiles x 5,667 tokens for one high-detail image.
IMAGE_TOKENS = 4096
IMAGE_TOKENS_GPT_4O_MINI = 48_169

_IMAGE_PARTS = frozenset(
    {"image_url", "input_image", "image", "computer_screenshot", "image_generation_call"}
)
# Parts whose tokens are not in the body: files by id or URL, PDFs, audio, stored items, web
# results, and reasoning carried as ciphertext (its billed length is not its encrypted length).
_OPAQUE_PARTS = frozenset(
    {
        "file",
        "input_file",
        "input_audio",
        "item_reference",
        "container_upload",
        "reasoning",
        "thinking",
        "redacted_thinking",
        "web_search_call",
        "web_search_tool_result",
        "web_fetch_tool_result",
    }
)
# Top-level request fields that steer sampling or delivery and never reach the prompt. Any
# other field is counted, so a new prompt-bearing field errs on the side of a larger bound.
_NOT_PROMPT = frozenset(
    {
        "model", "max_tokens", "max_completion_tokens", "max_output_tokens", "n", "best_of",
        "stream", "stream_options", "temperature", "top_p", "top_k", "seed", "stop",
        "stop_sequences", "user", "metadata", "store", "service_tier", "logprobs",
        "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "echo",
        "parallel_tool_calls", "safety_identifier", "prompt_cache_key", "background",
        "include", "truncation", "encoding_format", "dimensions", "modalities",
        "reasoning_effort", "verbosity", "max_tool_calls",
    }
)  # fmt: skip
# Fields that make the provider read input Outlay cannot see: stored conversations and
# prompts, and tools that run on the provider's side and feed their results back as input.
_OPAQUE_FIELDS = frozenset(
    {"previous_response_id", "conversation", "prompt", "web_search_options", "mcp_servers",
     "container"}
)  # fmt: skip
# Routes whose input is one conversation, read in one context window (a batch of completion
# prompts or embedding inputs is not)
_ONE_CONVERSATION = frozenset({"openai.chat", "openai.responses", "anthropic.messages",
                               "anthropic.count_tokens"})
# Where a list of token ids may stand in for text
_TOKEN_IDS = {"openai.completions": "prompt", "openai.embeddings": "input"}
_ANTHROPIC_SERVER_TOOLS = ("web_search", "web_fetch", "code_execution", "mcp", "tool_search")


class _Bound:
    """Running total of tokens, plus whether some input is out of sight."""

    def __init__(self, image_tokens: int) -> None:
        self.tokens = PER_REQUEST_TOKENS
        self.opaque = False
        self.image_tokens = image_tokens

    def content(self, value: object) -> None:
        """Count message content, recognising image and opaque parts wherever they nest."""
        # the exact-type tests first: they are what JSON holds, and each ABC test (Mapping)
        # costs more than the counting it guards
        if type(value) is str:
            self.tokens += _utf8_len(value)
        elif isinstance(value, list):
            for item in value:
                self.content(item)
        elif type(value) is dict or isinstance(value, Mapping):
            kind = value.get("type")
            if not isinstance(kind, str):
                kind = None  # a malformed part is counted as plain JSON, never a crash
            if kind in _IMAGE_PARTS:
                self.tokens += self.image_tokens
            elif kind in _OPAQUE_PARTS:
                self.opaque = True
            elif kind == "document":
                self._document(value)
            else:
                for key, item in value.items():
                    # JSON's keys and most values are strings, most of them ASCII: counted
                    # here, not in a call, and without encoding them
                    self.tokens += (len(key) if type(key) is str and key.isascii()
                                    else text_bytes(key))
                    if type(item) is str:
                        self.tokens += len(item) if item.isascii() else _utf8_len(item)
                        continue
                    if key == "audio" and isinstance(item, Mapping) and "id" in item:
                        self.opaque = True  # an earlier audio reply, referenced by id
                    self.content(item)
        else:
            self.tokens += text_bytes(value)

    def messages(self, messages: object) -> None:
        if isinstance(messages, list):
            self.tokens += PER_MESSAGE_TOKENS * len(messages)
        self.content(messages)

    def _document(self, block: Mapping[str, Any]) -> None:
        """Anthropic documents: plain text or nested blocks are countable; PDFs and files not."""
        source = block.get("source")
        self.content({key: item for key, item in block.items() if key not in ("type", "source")})
        if isinstance(source, Mapping) and source.get("type") == "text":
            self.tokens += text_bytes(source.get("data"))
        elif isinstance(source, Mapping) and source.get("type") == "content":
            self.content(source.get("content"))
        else:
            self.opaque = True


def _utf8_len(text: str) -> int:
    # an ASCII string's length is its bytes' (isascii reads a flag CPython keeps, no scan);
    # surrogatepass: JSON may carry a lone surrogate, which still costs tokens upstream
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def text_bytes(value: object) -> int:
    """UTF-8 bytes of the words of a JSON value: strings, keys, and literals as JSON spells them."""
    if isinstance(value, str):
        return _utf8_len(value)
    if type(value) is dict or isinstance(value, Mapping):
        return sum(text_bytes(key) + text_bytes(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return sum(text_bytes(item) for item in value)
    if value is None:
        return 4
    if isinstance(value, bool):
        return 4 if value else 5
    return len(str(value))


def prompt_tokens(value: object) -> int:
    """Tokens of a completions `prompt` or embeddings `input`: text, or lists of token ids."""
    if isinstance(value, int) and not isinstance(value, bool):
        return 1  # a token id is one token
    if isinstance(value, list):
        return sum(prompt_tokens(item) for item in value)
    return text_bytes(value)


def input_bound(route: str, body: Mapping[str, Any], price: ModelPrice | None) -> int:
    """An upper bound on the input tokens the provider will count for this (validated) body."""
    bound = _Bound(image_tokens_for(price))
    token_ids = _TOKEN_IDS.get(route)
    for field, value in body.items():
        if field in _NOT_PROMPT:
            continue
        if field == token_ids:
            bound.tokens += prompt_tokens(value)
        elif field in _OPAQUE_FIELDS:
            bound.opaque = True
        elif field in ("messages", "input"):
            bound.messages(value)
        elif field == "system":
            bound.content(value)
        elif field in ("tools", "functions"):
            _tools(bound, route, value)
        else:
            bound.tokens += text_bytes(value)
    if price is None:
        return bound.tokens
    if bound.opaque:
        # Whatever the provider reads, it cannot read more than the model's context window.
        return price.context_window
    if route in _ONE_CONVERSATION:
        # nor does it take a longer input: it refuses it (or, asked to, truncates it)
        return min(bound.tokens, price.context_window)
    return bound.tokens


def image_tokens_for(price: ModelPrice | None) -> int:
    if price is not None and price.name.startswith("gpt-4o-mini"):
        return IMAGE_TOKENS_GPT_4O_MINI
    return IMAGE_TOKENS


def _tools(bound: _Bound, route: str, tools: object) -> None:
    bound.tokens += text_bytes(tools)
    if not isinstance(tools, list) or not tools:
        return
    anthropic = route.startswith("anthropic.")
    bound.tokens += ANTHROPIC_TOOLS_TOKENS if anthropic else OPENAI_TOOLS_TOKENS
    for tool in tools:
        bound.tokens += PER_TOOL_TOKENS
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if not isinstance(kind, str) or kind in ("function", "custom"):
            continue
        if anthropic and not kind.startswith(_ANTHROPIC_SERVER_TOOLS):
            bound.tokens += ANTHROPIC_BUILTIN_TOOL_TOKENS
        else:
            # Web search, file search, code execution, MCP: their results come back as input.
            bound.opaque = True
