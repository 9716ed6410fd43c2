// interceptAll and restore on the real openai and @anthropic-ai/sdk clients and on fetch, against a
// stand-in gateway on loopback: where calls go and as whom, the typed errors, exact restoration.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { after, afterEach, before, beforeEach, test } from "node:test";

import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import {
  BudgetExceeded, InvalidKey, KeyRevoked, ModelNotAllowed, Outlay, OutlayError, RateLimited,
} from "outlay";
import { BUDGET, CHAT, json, MESSAGE, RATE, RID, refusal, startGateway } from "./gateway.mjs";

const KEY = "olk_intercepted";
const MESSAGES = [{ role: "user", content: "Say hello." }];
const ENVIRONMENT = ["OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"];
const OpenAICommonJS = createRequire(import.meta.url)("openai");

let gateway;
let answers; // what the stand-in gateway answers next, by path; CHAT otherwise
const ORIGINAL_FETCH = globalThis.fetch;

before(async () => {
  gateway = await startGateway((request) => answers.shift()?.(request) ?? (request.url.startsWith("/v1/messages") ? json(200, MESSAGE) : json(200, CHAT)));
});
after(() => gateway.close());
beforeEach(() => {
  answers = [];
  gateway.received.length = 0;
  for (const name of ENVIRONMENT) {
    delete process.env[name];
  }
});
afterEach(() => new Outlay({ key: KEY }).restore());

function intercept(options = {}) {
  const outlay = new Outlay({ key: KEY, baseUrl: gateway.url, ...options });
  outlay.interceptAll();
  return outlay;
}

const chat = (client) => client.chat.completions.create({ model: "gpt-4o-mini", messages: MESSAGES });
const message = (client) => client.messages.create({ model: "claude-haiku-4-5", max_tokens: 16, messages: MESSAGES });
const rejection = (promise) => promise.then(() => assert.fail("no error"), (error) => error);

function onlyRequest() {
  assert.equal(gateway.received.length, 1, JSON.stringify(gateway.received.map((r) => r.url)));
  return gateway.received[0];
}

// --- where clients send ------------------------------------------------------------------------

test("an openai client with a bogus key and no base URL calls the gateway with the key", async () => {
  intercept();
  const client = new OpenAI({ apiKey: "sk-bogus", maxRetries: 0 });

  const completion = await chat(client);

  assert.equal(completion.choices[0].message.content, "Hello.");
  const sent = onlyRequest();
  assert.deepEqual([sent.method, sent.url, sent.headers.authorization], ["POST", "/v1/chat/completions", `Bearer ${KEY}`]);
  assert.ok(!JSON.stringify(sent.headers).includes("sk-bogus"));
  assert.equal(JSON.parse(sent.body).model, "gpt-4o-mini");
});

test("no key at all is needed, and the environment's key and base URL are overridden", async () => {
  assert.throws(() => new OpenAI(), /OPENAI_API_KEY/); // without interception
  Object.assign(process.env, { OPENAI_API_KEY: "sk-env", OPENAI_BASE_URL: "https://proxy.example/v1", ANTHROPIC_API_KEY: "sk-ant-env", ANTHROPIC_BASE_URL: "https://proxy.example" });
  intercept();

  const [openai, anthropic] = [new OpenAI({ maxRetries: 0 }), new Anthropic({ maxRetries: 0 })];

  assert.deepEqual([openai.baseURL, openai.apiKey], [`${gateway.url}/v1`, KEY]);
  assert.deepEqual([anthropic.baseURL, anthropic.apiKey], [gateway.url, KEY]);
  await chat(openai);
  assert.equal(onlyRequest().headers.authorization, `Bearer ${KEY}`);
});

test("a client given OpenAI's own host and a real key explicitly is routed by its host", async () => {
  intercept();
  const client = new OpenAI({ apiKey: "sk-real", baseURL: "https://api.openai.com/v1", maxRetries: 0 });

  await chat(client);

  const sent = onlyRequest();
  assert.deepEqual([sent.url, sent.headers.authorization, sent.headers.host], ["/v1/chat/completions", `Bearer ${KEY}`, gateway.url.slice(7)]);
});

test("an anthropic client with no arguments calls /v1/messages with the key", async () => {
  process.env.ANTHROPIC_AUTH_TOKEN = "token-from-env";
  intercept();
  const client = new Anthropic({ maxRetries: 0 });

  const reply = await message(client);

  assert.equal(reply.content[0].text, "Hello.");
  const sent = onlyRequest();
  assert.equal(sent.url, "/v1/messages");
  assert.equal(sent.headers.authorization, `Bearer ${KEY}`);
  assert.ok(!JSON.stringify(sent.headers).includes("token-from-env"));
  assert.equal(process.env.ANTHROPIC_AUTH_TOKEN, undefined); // hidden while intercepting
});

// --- typed errors -----------------------------------------------------------------------------

test("a 402 is BudgetExceeded with its figures and still the openai SDK's error", async () => {
  intercept();
  answers.push(() => refusal(402, BUDGET));

  const error = await rejection(chat(new OpenAI({ maxRetries: 0 })));

  assert.ok(error instanceof OpenAI.APIError && error instanceof Error);
  assert.ok(error instanceof BudgetExceeded && error instanceof OutlayError && !(error instanceof RateLimited));
  assert.deepEqual([error.status, error.code, error.name, error.requestId], [402, "budget_exceeded", "BudgetExceeded", RID]);
  assert.deepEqual([error.scope, error.period, error.spentUsd, error.capUsd], ["agent:a", "day", "4.5", "5"]);
  assert.equal(error.resetsAt.toISOString(), "2026-07-01T00:00:00.000Z");
  assert.equal(error.message, BUDGET.message);
  assert.equal(error.headers.get("x-should-retry"), "false"); // the SDK's own fields stay
  assert.equal(error.error.code, "budget_exceeded");
});

test("a 429 is RateLimited with retryAfter and still openai's RateLimitError", async () => {
  intercept();
  answers.push(() => refusal(429, RATE, { headers: { "Retry-After": "13" } }));

  const error = await rejection(chat(new OpenAI({ maxRetries: 0 })));

  assert.ok(error instanceof OpenAI.RateLimitError && error instanceof RateLimited);
  assert.deepEqual([error.retryAfter, error.limit, error.scope], [13, 7, "key:key_1"]);
});

test("anthropic refusals arrive typed in anthropic's shape", async () => {
  intercept();
  answers.push(
    () => refusal(403, { code: "model_not_allowed", message: "Model 'claude-haiku-4-5' is not allowed.", allowed: ["gpt-4o-mini"], scope: "agent:a" }, { flavor: "anthropic" }),
    () => refusal(401, { code: "key_revoked", message: "The Outlay key key_1 has been revoked." }, { flavor: "anthropic" }),
  );
  const client = new Anthropic({ maxRetries: 0 });

  const denied = await rejection(message(client));
  const revoked = await rejection(message(client));

  assert.ok(denied instanceof Anthropic.PermissionDeniedError && denied instanceof ModelNotAllowed);
  assert.deepEqual(denied.allowed, ["gpt-4o-mini"]);
  assert.ok(revoked instanceof Anthropic.AuthenticationError && revoked instanceof KeyRevoked && revoked instanceof InvalidKey);
  assert.equal(revoked.code, "key_revoked");
});

test("an answer that is no Outlay refusal stays the SDK's plain error", async () => {
  intercept();
  answers.push(() => json(404, { error: { type: "invalid_request_error", message: "No such model." } }));

  const error = await rejection(chat(new OpenAI({ maxRetries: 0 })));

  assert.ok(error instanceof OpenAI.NotFoundError);
  assert.ok(!(error instanceof OutlayError));
  assert.equal(error.details, undefined);
});

test("the CommonJS build of the SDK, loaded beside the ES module one, is typed too", async () => {
  intercept();
  answers.push(() => refusal(402, BUDGET));

  const error = await rejection(chat(new OpenAICommonJS.OpenAI({ maxRetries: 0 })));

  assert.ok(error instanceof OpenAICommonJS.APIError && !(error instanceof OpenAI.APIError));
  assert.ok(error instanceof BudgetExceeded);
  assert.equal(error.capUsd, "5");
});

// --- vendor calls through fetch ---------------------------------------------------------------

test("a fetch call to Stripe's host goes to /vendors/stripe/ with the key, body and all", async () => {
  intercept();
  answers.push(() => json(200, { id: "pi_1", object: "payment_intent" }));

  const response = await fetch("https://api.stripe.com/v1/payment_intents?expand[]=customer", {
    method: "POST",
    headers: { Authorization: "Bearer sk_live_secret", "Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": "k-1" },
    body: "amount=2000&currency=usd",
  });

  assert.equal((await response.json()).id, "pi_1");
  const sent = onlyRequest();
  assert.deepEqual([sent.method, sent.url, sent.body], ["POST", "/vendors/stripe/v1/payment_intents?expand[]=customer", "amount=2000&currency=usd"]);
  assert.deepEqual([sent.headers.authorization, sent.headers["idempotency-key"], sent.headers["content-type"]], [`Bearer ${KEY}`, "k-1", "application/x-www-form-urlencoded"]);
  assert.equal(sent.headers["content-length"], "24");
});

test("a Request object, Twilio's basic auth and an added vendor host are routed as well", async () => {
  intercept({ vendors: { "api.acme.example": "acme" } });
  const basic = `Basic ${Buffer.from("ACsid:twilio-token").toString("base64")}`;

  await fetch(new Request("https://api.twilio.com/2010-04-01/Accounts/ACsid/Messages.json", { method: "POST", headers: { Authorization: basic }, body: "To=%2B1&Body=hi" }));
  await fetch(new URL("https://api.acme.example/v1/jobs"), { method: "POST", headers: [["x-api-key", "acme-secret"]], body: "{}" });

  const [twilio, acme] = gateway.received;
  assert.deepEqual([twilio.method, twilio.url, twilio.body], ["POST", "/vendors/twilio/2010-04-01/Accounts/ACsid/Messages.json", "To=%2B1&Body=hi"]);
  assert.equal(Buffer.from(twilio.headers.authorization.slice(6), "base64").toString(), `ACsid:${KEY}`);
  assert.deepEqual([acme.url, acme.headers["x-api-key"], acme.headers.authorization], ["/vendors/acme/v1/jobs", KEY, `Bearer ${KEY}`]);
});

test("a fetch call to any other host is the original fetch's, untouched", async () => {
  const elsewhere = await startGateway(() => json(200, { ok: true }));
  try {
    intercept();
    const response = await fetch(`${elsewhere.url}/v1/chat/completions`, { headers: { Authorization: "Bearer mine" } });
    assert.equal((await response.json()).ok, true);
    assert.deepEqual([elsewhere.received[0].headers.authorization, gateway.received.length], ["Bearer mine", 0]);
  } finally {
    await elsewhere.close();
  }
});

// --- restore ----------------------------------------------------------------------------------

function prototypeMethods() {
  const owners = [OpenAI.prototype, OpenAICommonJS.OpenAI.prototype, Object.getPrototypeOf(Anthropic.prototype), Anthropic.prototype];
  return owners.map((owner) => Object.getOwnPropertyDescriptor(owner, "makeStatusError"));
}

test("restore puts back fetch, the SDKs' methods and the environment exactly", () => {
  process.env.OPENAI_API_KEY = "sk-mine";
  process.env.ANTHROPIC_AUTH_TOKEN = "token-mine";
  const before = prototypeMethods();
  const outlay = intercept();
  assert.notEqual(globalThis.fetch, ORIGINAL_FETCH);
  assert.notDeepEqual(prototypeMethods(), before);

  outlay.restore();

  assert.equal(globalThis.fetch, ORIGINAL_FETCH);
  assert.deepEqual(Object.getOwnPropertyDescriptor(globalThis, "fetch").enumerable, true);
  assert.deepEqual(prototypeMethods(), before);
  assert.deepEqual(ENVIRONMENT.map((name) => process.env[name]), ["sk-mine", undefined, undefined, undefined, "token-mine"]);
  assert.ok(!("OPENAI_BASE_URL" in process.env));
  outlay.restore(); // nothing left to undo: no-op
  assert.equal(globalThis.fetch, ORIGINAL_FETCH);
});

test("restore sends new clients back to their own base URL; clients made while intercepting stay", async () => {
  process.env.OPENAI_API_KEY = "sk-mine";
  const outlay = intercept();
  const during = new OpenAI({ maxRetries: 0 });

  outlay.restore();
  const afterwards = new OpenAI({ maxRetries: 0 });
  await chat(during);

  assert.deepEqual([afterwards.baseURL, afterwards.apiKey], ["https://api.openai.com/v1", "sk-mine"]);
  assert.equal(new Anthropic({ apiKey: "x" }).baseURL, "https://api.anthropic.com");
  assert.equal(onlyRequest().headers.authorization, `Bearer ${KEY}`);
});

test("intercepting again replaces the settings, whichever Outlay does it, and one restore undoes it", async () => {
  intercept();
  const second = new Outlay({ key: "olk_second", baseUrl: gateway.url });
  second.interceptAll();

  await chat(new OpenAI({ maxRetries: 0 }));
  new Outlay({ key: KEY }).restore();

  assert.equal(onlyRequest().headers.authorization, "Bearer olk_second");
  assert.equal(globalThis.fetch, ORIGINAL_FETCH);
  assert.equal(process.env.OPENAI_API_KEY, undefined);
});

test("without a global fetch interception refuses to start and changes nothing", () => {
  const descriptor = Object.getOwnPropertyDescriptor(globalThis, "fetch");
  delete globalThis.fetch;
  try {
    assert.throws(() => intercept(), /Node.js 18 or newer/);
    assert.equal(process.env.OPENAI_API_KEY, undefined);
  } finally {
    Object.defineProperty(globalThis, "fetch", descriptor);
  }
});

test("a failure half-way through interception undoes what was done", () => {
  // a fetch nobody may replace: the patches made before it are undone, the environment untouched
  const script = `
    const { Outlay } = require("outlay");
    const OpenAI = require("openai");
    const before = Object.getOwnPropertyDescriptor(OpenAI.OpenAI.prototype, "makeStatusError");
    Object.defineProperty(globalThis, "fetch", { value: globalThis.fetch, writable: false, configurable: false });
    let message = "";
    try { new Outlay({ key: "olk_x" }).interceptAll(); } catch (error) { message = error.message; }
    const after = Object.getOwnPropertyDescriptor(OpenAI.OpenAI.prototype, "makeStatusError");
    console.log(JSON.stringify({ message, same: before.value === after.value, key: process.env.OPENAI_API_KEY ?? null }));
  `;
  const run = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", env: { PATH: process.env.PATH }, timeout: 30_000 });
  assert.equal(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout);
  assert.match(result.message, /fetch/);
  assert.deepEqual([result.same, result.key], [true, null]);
});
