// An agent written as a Node.js user would write one, run by tests/e2e/test_e2e_node_sdk.py against
// a real `outlay serve`: each scenario intercepts with a key of its own (minted by the test, given
// in OUTLAY_E2E as {url, keys}), calls the gateway through the official SDKs or fetch, and reports
// what it saw as one JSON object on stdout for the test to check against the gateway's audit.
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { BudgetExceeded, ModelNotAllowed, Outlay, OutlayError, RateLimited, withRetry } from "outlay";

const { url, keys } = JSON.parse(process.env.OUTLAY_E2E);
const MESSAGES = [{ role: "user", content: "Say hello." }];
const ORIGINAL_FETCH = globalThis.fetch;

const chat = (client) => client.chat.completions.create({ model: "gpt-4o-mini", messages: MESSAGES, max_tokens: 5 });
const rejection = (promise) => promise.then(() => { throw new Error("the call was not refused"); }, (error) => error);

/** Run `body` intercepted with the scenario's key, restored afterwards whatever happens. */
async function intercepted(scenario, body) {
  const outlay = new Outlay({ key: keys[scenario], baseUrl: url });
  outlay.interceptAll();
  try {
    return await body(outlay);
  } finally {
    outlay.restore();
  }
}

const SCENARIOS = {
  async chat() {
    return intercepted("chat", async () => {
      const client = new OpenAI({ maxRetries: 0 }); // OPENAI_API_KEY in the environment is bogus
      const { data, response } = await chat(client).withResponse();
      return { content: data.choices[0].message.content, requestId: response.headers.get("x-outlay-request-id"), baseURL: client.baseURL };
    });
  },

  async stream() {
    return intercepted("stream", async () => {
      const client = new OpenAI({ maxRetries: 0 });
      const stream = await client.chat.completions.create({ model: "gpt-4o-mini", messages: MESSAGES, stream: true, stream_options: { include_usage: true } });
      let text = "";
      let chunks = 0;
      let usage = null;
      for await (const chunk of stream) {
        chunks += 1;
        text += chunk.choices[0]?.delta?.content ?? "";
        usage = chunk.usage ?? usage;
      }
      return { text, chunks, usage };
    });
  },

  async budget() {
    return intercepted("budget", async () => {
      const error = await rejection(chat(new OpenAI({ maxRetries: 0 })));
      return {
        budgetExceeded: error instanceof BudgetExceeded, outlayError: error instanceof OutlayError,
        openaiError: error instanceof OpenAI.APIError, rateLimited: error instanceof RateLimited,
        status: error.status, code: error.code, scope: error.scope, period: error.period,
        spentUsd: error.spentUsd, capUsd: error.capUsd, resetsAt: error.resetsAt?.toISOString() ?? null,
        requestId: error.requestId, message: error.message,
      };
    });
  },

  async rate() {
    return intercepted("rate", async () => {
      const client = new OpenAI({ maxRetries: 0 });
      await chat(client);
      const error = await rejection(chat(client));
      const slept = [];
      const gaveUp = await rejection(withRetry(() => chat(client), { attempts: 3, maxWaitS: 0.5, sleep: async (s) => { slept.push(s); } }));
      return {
        rateLimited: error instanceof RateLimited, openaiRateLimitError: error instanceof OpenAI.RateLimitError,
        retryAfter: error.retryAfter, limit: error.limit, code: error.code,
        gaveUpRateLimited: gaveUp instanceof RateLimited, slept,
      };
    });
  },

  async anthropic() {
    const answered = await intercepted("anthropic", async () => {
      const reply = await new Anthropic({ maxRetries: 0 }).messages.create({ model: "claude-haiku-4-5", max_tokens: 16, messages: MESSAGES });
      return { type: reply.content[0].type, text: reply.content[0].text };
    });
    const refused = await intercepted("anthropicDenied", async () => {
      const error = await rejection(new Anthropic({ maxRetries: 0 }).messages.create({ model: "claude-haiku-4-5", max_tokens: 16, messages: MESSAGES }));
      return { modelNotAllowed: error instanceof ModelNotAllowed, permissionDenied: error instanceof Anthropic.PermissionDeniedError, allowed: error.allowed };
    });
    return { ...answered, ...refused };
  },

  async models() {
    return intercepted("models", async () => {
      const openai = new OpenAI({ maxRetries: 0 });
      const model = await openai.models.retrieve("gpt-4o-mini");
      const listed = [];
      for await (const entry of openai.models.list()) listed.push(entry.id);
      const claude = await new Anthropic({ maxRetries: 0 }).models.retrieve("claude-haiku-4-5");
      const claudes = [];
      for await (const entry of new Anthropic({ maxRetries: 0 }).models.list({ limit: 3 })) claudes.push(entry.id);
      const missing = await rejection(openai.models.retrieve("no-such-model"));
      return {
        model: { id: model.id, object: model.object, owned_by: model.owned_by }, listed,
        claude: { id: claude.id, type: claude.type, display_name: claude.display_name, created_at: claude.created_at },
        claudes, missing: { notFound: missing instanceof OpenAI.NotFoundError, status: missing.status },
      };
    });
  },

  async stripe() {
    return intercepted("stripe", async () => {
      const response = await fetch("https://api.stripe.com/v1/payment_intents", {
        method: "POST",
        headers: { Authorization: "Bearer sk_test_bogus", "Content-Type": "application/x-www-form-urlencoded" },
        body: "amount=2000&currency=usd",
      });
      const intent = await response.json();
      return { status: response.status, amount: intent.amount, currency: intent.currency, object: intent.object };
    });
  },

  async restore() {
    const outlay = new Outlay({ key: keys.restore, baseUrl: url });
    outlay.interceptAll();
    const during = new OpenAI({ maxRetries: 0 });
    const intercepting = { baseURL: during.baseURL, fetchReplaced: globalThis.fetch !== ORIGINAL_FETCH };
    outlay.restore();
    const afterwards = new OpenAI({ maxRetries: 0 });
    await chat(during); // made while intercepting: still the gateway's, on the key
    return {
      intercepting,
      afterwards: { baseURL: afterwards.baseURL, apiKey: afterwards.apiKey, anthropicBaseURL: new Anthropic().baseURL },
      environment: { OPENAI_BASE_URL: process.env.OPENAI_BASE_URL ?? null, OPENAI_API_KEY: process.env.OPENAI_API_KEY ?? null },
      fetchRestored: globalThis.fetch === ORIGINAL_FETCH,
    };
  },
};

const results = {};
for (const [name, scenario] of Object.entries(SCENARIOS)) {
  try {
    results[name] = await scenario();
  } catch (error) {
    results[name] = { failed: String(error?.stack ?? error) };
  }
}
console.log(JSON.stringify(results));
