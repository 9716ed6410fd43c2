// The CommonJS build, as `require("outlay")` gives it: the same surface, and typed errors from
// the CommonJS build of the openai SDK that a CommonJS agent loads.
const assert = require("node:assert/strict");
const { test } = require("node:test");

const OpenAI = require("openai");
const outlay = require("outlay");

const EXPORTS = ["AccountNotAllowed", "ApprovalRequired", "BudgetExceeded", "DestinationNotAllowed", "InvalidKey",
  "InvalidRequest", "KeyExpired", "KeyRevoked", "ModelNotAllowed", "MoneyOutNotCapped", "NotAllowed",
  "OperationNotAllowed", "Outlay", "OutlayError", "RateLimited", "Unavailable", "VendorNotAllowed",
  "budgetOf", "errorFrom", "errorFromAnswer", "errorFromResponse", "withRetry"];

test("both builds export exactly the same names", async () => {
  const esm = await import("outlay");
  assert.deepEqual(Object.keys(outlay).sort(), EXPORTS);
  assert.deepEqual(Object.keys(esm).sort(), EXPORTS);
  assert.notEqual(esm.Outlay, outlay.Outlay); // two builds, as Node loads them
});

test("an intercepted CommonJS openai client throws the CommonJS build's typed errors", async () => {
  const { BUDGET, CHAT, json, refusal, startGateway } = await import("./gateway.mjs");
  const answers = [() => json(200, CHAT), () => refusal(402, BUDGET)];
  const gateway = await startGateway(() => answers.shift()());
  const ol = new outlay.Outlay({ key: "olk_cjs", baseUrl: gateway.url });
  try {
    ol.interceptAll();
    const client = new OpenAI({ maxRetries: 0 });
    const chat = () => client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });

    assert.equal((await chat()).choices[0].message.content, "Hello.");
    const error = await chat().then(() => assert.fail("no error"), (e) => e);

    assert.ok(error instanceof OpenAI.APIError && error instanceof outlay.BudgetExceeded);
    assert.deepEqual([error.spentUsd, error.capUsd, error.scope], ["4.5", "5", "agent:a"]);
    assert.deepEqual(gateway.received.map((r) => [r.url, r.headers.authorization]), [["/v1/chat/completions", "Bearer olk_cjs"], ["/v1/chat/completions", "Bearer olk_cjs"]]);
  } finally {
    ol.restore();
    await gateway.close();
  }
});
