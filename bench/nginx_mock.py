"""The mock upstream: nginx answering a fixed OpenAI chat completion, and its SSE stream.

POST /v1/chat/completions              a chat completion with usage (JSON)
POST /v1/chat/completions?stream=1     the same answer as an SSE stream (gateways that
                                       forward the query string reach it so)
POST /stream/v1/chat/completions       the stream again, for a gateway configured with a
                                       base URL of its own (LiteLLM's second model)

`return 200 '<body>'` answers a POST from memory; the stream, too long for that, is a file.
"""

from __future__ import annotations

import json
from pathlib import Path

MODEL = "gpt-4o-mini"
SNAPSHOT = "gpt-4o-mini-2024-07-18"
ANSWER = ("Hello! I am a mock upstream answering every request with the same few dozen "
          "words, so that a benchmark measures the gateways in front of me rather than any "
          "model: one chunk per word, then the finish reason and the usage.")
WORDS = tuple(ANSWER.split(" "))
USAGE = {
    "prompt_tokens": 24, "completion_tokens": len(WORDS), "total_tokens": 24 + len(WORDS),
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                  "accepted_prediction_tokens": 0,
                                  "rejected_prediction_tokens": 0},
}
_ENVELOPE = {"id": "chatcmpl-bench0000000000000000000000", "created": 1_735_689_600,
             "model": SNAPSHOT, "system_fingerprint": "fp_bench", "service_tier": "default"}


def completion_body() -> str:
    return json.dumps({
        **_ENVELOPE, "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER,
                                             "refusal": None, "annotations": []},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": USAGE,
    }, separators=(",", ":"))


def _chunk(choices: list[object], usage: object = None) -> str:
    event = {**_ENVELOPE, "object": "chat.completion.chunk", "choices": choices, "usage": usage}
    return "data: " + json.dumps(event, separators=(",", ":")) + "\n\n"


def stream_body() -> str:
    """A role chunk, one chunk per word, the finish reason, the usage chunk, [DONE]."""
    def delta(d: dict[str, object], finish: str | None = None) -> list[object]:
        return [{"index": 0, "delta": d, "logprobs": None, "finish_reason": finish}]

    events = [_chunk(delta({"role": "assistant", "content": "", "refusal": None}))]
    events += [_chunk(delta({"content": (" " if i else "") + word}))
               for i, word in enumerate(WORDS)]
    events.append(_chunk(delta({}, "stop")))
    events.append(_chunk([], USAGE))
    events.append("data: [DONE]\n\n")
    return "".join(events)


def request_body(*, stream: bool = False, model: str = MODEL) -> str:
    """What the load generators send: a small, typical chat completion request."""
    body: dict[str, object] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello to the benchmark in one short sentence."},
        ],
        "max_tokens": 64,
        "temperature": 0,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":"))


def _quoted(text: str) -> str:
    # inside '…' nginx interpolates $variables and reads backslash escapes: keep both out
    if any(c in text for c in "'$\\"):
        raise ValueError("a mock body must hold no quote, dollar or backslash")
    return f"'{text}'"


def nginx_config(prefix: Path, port: int, extra: str = "") -> str:
    """A self-contained nginx.conf: everything under ``prefix``, in the foreground. Writes
    the stream's body beside it. `extra`: more locations (vendor_read's Stripe)."""
    (prefix / "stream.sse").write_text(stream_body())
    return f"""\
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  # the gateways keep their connections for the whole run: never make them reconnect
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  server_tokens off;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /v1/chat/completions {{
      if ($arg_stream) {{ rewrite ^ /stream/v1/chat/completions last; }}
      default_type application/json;
      return 200 {_quoted(completion_body())};
    }}
    location = /stream/v1/chat/completions {{
      # the stream is longer than a config string may be: a file, served to a POST by
      # answering 405 and redirecting that error to it, with status 200 (as a GET)
      error_page 405 =200 /stream.sse;
      return 405;
    }}
    location = /stream.sse {{
      internal;
      root {prefix};
      default_type text/event-stream;
    }}
    location = /healthz {{ return 200 'ok'; }}
{extra}  }}
}}
"""
