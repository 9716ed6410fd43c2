// A stand-in for the gateway on loopback: records every request that reaches it and answers
// with what the test scripts (by default, a chat completion as the simulated provider gives).
import { createServer } from "node:http";

export const CHAT = {
  id: "chatcmpl-1", object: "chat.completion", created: 1, model: "gpt-4o-mini",
  choices: [{ index: 0, finish_reason: "stop", message: { role: "assistant", content: "Hello." } }],
  usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
};
export const MESSAGE = {
  id: "msg_1", type: "message", role: "assistant", model: "claude-haiku-4-5",
  content: [{ type: "text", text: "Hello." }], stop_reason: "end_turn", stop_sequence: null,
  usage: { input_tokens: 3, output_tokens: 2 },
};

/** An answer: status, headers and a JSON body. */
export function json(status, body, headers = {}) {
  return { status, headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) };
}

/** Start a recording server; `reply(request)` gives each answer. Close it with `close()`. */
export async function startGateway(reply = () => json(200, CHAT)) {
  const received = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const request = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() };
      received.push(request);
      const answer = reply(request);
      res.writeHead(answer.status, answer.headers);
      res.end(answer.body);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    received,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

// Refusals as the gateway writes them (docs/contract.md §4.3), in both body shapes.
export const RID = "req_0123456789ab0123456789ab";

export function refusal(status, error, { flavor = "openai", headers = {} } = {}) {
  const type = { 401: "authentication_error", 402: "budget_exceeded", 403: "permission_error", 429: "rate_limit_error" }[status] ?? "invalid_request_error";
  const inner = { type, param: null, ...error };
  const body = flavor === "anthropic" ? { type: "error", error: inner } : { error: inner };
  const extra = status === 402 ? { "x-should-retry": "false" } : {};
  return json(status, body, { "X-Outlay-Request-Id": RID, ...extra, ...headers });
}

export const BUDGET = {
  code: "budget_exceeded", message: "Budget exceeded: $4.5 spent of a $5 hard cap today.",
  scope: "agent:a", period: "day", spent_usd: "4.5", cap_usd: "5", resets_at: "2026-07-01T00:00:00Z",
};
export const RATE = {
  code: "rate_limit_exceeded", message: "Rate limit reached.", scope: "key:key_1", limit: 7,
  retry_after: 13, window: "rpm", window_s: 60, reset_unix: 1800000000,
};
