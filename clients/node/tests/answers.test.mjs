// errorFrom and errorFromResponse: the typed refusal behind what code that does not intercept
// has in hand, an SDK's error or a fetch Response.
import assert from "node:assert/strict";
import { test } from "node:test";

import OpenAI from "openai";
import {
  BudgetExceeded, budgetOf, DestinationNotAllowed, errorFrom, errorFromResponse, NotAllowed, RateLimited,
} from "outlay";
import { BUDGET, RID, refusal } from "./gateway.mjs";

const ANSWER = refusal(402, BUDGET);

/** What the openai SDK throws for ANSWER when nothing is intercepted. */
async function openaiError(answer = ANSWER) {
  const client = new OpenAI({
    apiKey: "olk_x", baseURL: "http://gw.test/v1", maxRetries: 0,
    fetch: async () => new Response(answer.body, { status: answer.status, headers: answer.headers }),
  });
  return client.models.list().then(() => assert.fail("no error"), (error) => error);
}

test("errorFrom reads the openai SDK's status error", async () => {
  const error = await openaiError();
  assert.ok(error instanceof OpenAI.APIError);
  assert.ok(!(error instanceof BudgetExceeded)); // nothing is intercepted here

  const got = errorFrom(error);

  assert.ok(got instanceof BudgetExceeded);
  assert.deepEqual([got.capUsd, got.requestId, got.scope], ["5", RID, "agent:a"]);
});

test("errorFrom reads errors that keep the body as raw (stripe-node) or only a status", () => {
  const stripe = errorFrom({ statusCode: 402, headers: { "x-outlay-request-id": RID }, raw: JSON.parse(ANSWER.body).error });
  const resend = errorFrom({ name: "rate_limit_exceeded", message: "Too many requests", statusCode: 429 });
  const twilio = errorFrom(Object.assign(new Error("refused"), { status: 402, code: 20402 }));
  const revoked = errorFrom(Object.assign(new Error("refused"), { status: 401 }));

  assert.ok(stripe instanceof BudgetExceeded);
  assert.deepEqual([stripe.spentUsd, stripe.requestId], ["4.5", RID]);
  assert.ok(resend instanceof RateLimited);
  assert.equal(resend.retryAfter, null);
  assert.ok(twilio instanceof BudgetExceeded);
  assert.equal(revoked, null); // 401 alone does not say revoked, expired or unknown
});

test("errorFrom reads the code and details twilio-node and resend-node keep", () => {
  // twilio-node's RestException: status, code (ours is a word, Twilio's own a number), details
  const twilio = errorFrom(Object.assign(new Error("[HTTP 403] Unable to create record: The twilio destination 'GB' is not allowed."), {
    status: 403, code: "destination_not_allowed", moreInfo: null,
    details: { vendor: "twilio", destination: "GB", allowed: ["US"], scope: "agent:a" },
  }));
  const twilioOwn = errorFrom(Object.assign(new Error("no"), { status: 403, code: 20003 }));
  // resend-node's error: our code as its `name`
  const resend = errorFrom({ name: "destination_not_allowed", message: "Not allowed.", statusCode: 403 });
  const resendOwn = errorFrom({ name: "restricted_api_key", message: "Restricted.", statusCode: 403 });

  assert.ok(twilio instanceof DestinationNotAllowed && twilio instanceof NotAllowed);
  assert.deepEqual([twilio.destination, twilio.allowed, twilio.scope, twilio.message],
    ["GB", ["US"], "agent:a", "The twilio destination 'GB' is not allowed."]);
  assert.equal(twilioOwn, null);
  assert.ok(resend instanceof DestinationNotAllowed);
  assert.equal(resendOwn, null);
});

test("errorFrom returns an Outlay error itself and null for anything else", () => {
  const own = new RateLimited("slow down", { details: { retry_after: 1 } });
  assert.equal(errorFrom(own), own);
  for (const value of [new Error("no"), null, undefined, "402", 402, { status: "402" }, { status: 200, error: { code: "budget_exceeded" } }]) {
    assert.equal(errorFrom(value), null, String(value));
  }
});

test("a fetch Response is read by errorFromResponse, from a clone", async () => {
  const response = new Response(ANSWER.body, { status: ANSWER.status, headers: ANSWER.headers });

  assert.equal(errorFrom(response), null); // its body can only be read asynchronously
  const got = await errorFromResponse(response);

  assert.ok(got instanceof BudgetExceeded);
  assert.equal(got.spentUsd, "4.5");
  assert.equal((await response.json()).error.code, "budget_exceeded"); // still unread
  assert.equal(await errorFromResponse(new Response("{}", { status: 200 })), null);
});

test("a Response whose body was read is typed by status and headers alone", async () => {
  const response = new Response("{}", { status: 429, headers: { "Retry-After": "9" } });
  await response.text();
  const got = await errorFromResponse(response);
  assert.ok(got instanceof RateLimited);
  assert.equal(got.retryAfter, 9);
});

test("budgetOf reads the budget an allowed answer reports", async () => {
  const headers = { "X-Outlay-Budget-Remaining-Usd": "1.25", "X-Outlay-Budget-Scope": "tag:customer=acme" };
  const response = new Response("{}", { status: 200, headers });
  assert.deepEqual(budgetOf(response), { remainingUsd: "1.25", scope: "tag:customer=acme" });
  assert.deepEqual(budgetOf({ data: {}, response }), { remainingUsd: "1.25", scope: "tag:customer=acme" });
  assert.deepEqual(budgetOf({ "x-outlay-budget-remaining-usd": "0" }), { remainingUsd: "0", scope: null });
  assert.equal(budgetOf(new Response("{}")), null); // no hard budget applied
  assert.equal(budgetOf({ "X-Outlay-Budget-Remaining-Usd": "lots" }), null);
  assert.equal(budgetOf(null), null);
  assert.equal(budgetOf("x"), null);
});
