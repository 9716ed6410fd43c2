// withRetry: waits what Retry-After says, backs off on 5xx, never retries a 402, 401 or 403,
// and gives up with the last error. Sleeping is injected, so nothing here waits.
import assert from "node:assert/strict";
import { test } from "node:test";

import OpenAI from "openai";
import {
  ApprovalRequired, BudgetExceeded, InvalidKey, InvalidRequest, KeyExpired, KeyRevoked,
  ModelNotAllowed, RateLimited, Unavailable, withRetry,
} from "outlay";

const RESULT = { id: "chatcmpl-1" };

function limited(retryAfter = 2) {
  return new RateLimited("Rate limit reached.", { details: retryAfter === null ? { limit: 1 } : { limit: 1, retry_after: retryAfter } });
}

/** A function that throws the given errors in turn, then returns RESULT. */
function script(...errors) {
  const fn = async () => {
    fn.calls += 1;
    if (errors.length > 0) {
      throw errors.shift();
    }
    return RESULT;
  };
  fn.calls = 0;
  return fn;
}

function sleeper() {
  const sleeps = [];
  return { sleeps, sleep: async (seconds) => { sleeps.push(seconds); } };
}

/** The openai SDK's own error for an answer, as any upstream may send it. */
async function sdkError(status, body, headers = {}) {
  const client = new OpenAI({
    apiKey: "sk-x", baseURL: "http://upstream.test/v1", maxRetries: 0,
    fetch: async () => Response.json(body, { status, headers }),
  });
  return client.models.list().then(() => assert.fail("no error"), (error) => error);
}

test("waits the Retry-After of each refusal, then returns", async () => {
  const fn = script(limited(3), limited(1));
  const { sleeps, sleep } = sleeper();
  assert.equal(await withRetry(fn, { attempts: 3, sleep }), RESULT);
  assert.deepEqual([sleeps, fn.calls], [[3, 1], 3]);
});

for (const error of [
  new BudgetExceeded("Budget exceeded.", { details: { retry_after: 1 } }),
  new ModelNotAllowed("Not allowed."), new KeyRevoked("Revoked."), new KeyExpired("Expired."),
  new InvalidKey("Unknown."), new ApprovalRequired("Approve first.", { details: { approval_id: "apr_1" } }),
  new InvalidRequest("Bad."), new Error("a bug in the agent"), "a string thrown",
]) {
  test(`never retries ${error.name ?? error}`, async () => {
    const fn = script(error);
    const { sleeps, sleep } = sleeper();
    await assert.rejects(withRetry(fn, { attempts: 5, sleep }), (thrown) => thrown === error);
    assert.deepEqual([fn.calls, sleeps], [1, []]);
  });
}

test("an SDK's own 402, 401 and 403 are never retried", async () => {
  for (const status of [402, 401, 403]) {
    const error = await sdkError(status, { error: { message: "no", code: status === 402 ? "budget_exceeded" : "denied" } }, { "retry-after": "1" });
    const fn = script(error);
    const { sleeps, sleep } = sleeper();
    await assert.rejects(withRetry(fn, { attempts: 5, sleep }), (thrown) => thrown === error);
    assert.deepEqual([fn.calls, sleeps], [1, []], String(status));
  }
});

test("an SDK's own 429 is retried after its Retry-After header", async () => {
  const fn = script(await sdkError(429, { error: { message: "slow down", type: "requests" } }, { "retry-after": "4" }));
  const { sleeps, sleep } = sleeper();
  assert.equal(await withRetry(fn, { sleep }), RESULT);
  assert.deepEqual(sleeps, [4]);
});

test("a 429 with a foreign code (openai's quota) is not retried", async () => {
  const error = await sdkError(429, { error: { message: "quota", code: "insufficient_quota" } });
  await assert.rejects(withRetry(script(error), { sleep: sleeper().sleep }), (thrown) => thrown === error);
});

test("5xx are retried after a back-off, or their Retry-After", async () => {
  const upstream = await sdkError(500, { error: { message: "oops" } });
  const busy = await sdkError(503, { error: { message: "busy" } }, { "retry-after": "2" });
  const ours = new Unavailable("No endpoint answered.", { status: 502, code: "upstream_unavailable" });
  const fn = script(upstream, busy, ours);
  const { sleeps, sleep } = sleeper();

  assert.equal(await withRetry(fn, { attempts: 4, sleep, random: () => 1 }), RESULT);

  assert.deepEqual(sleeps, [0.5, 2, 2]); // 0.5 x 2^(attempt - 1), full jitter at its top
});

test("gives up after the attempts with the last error", async () => {
  const errors = [limited(1), limited(1), limited(1), limited(1)];
  const fn = script(...errors);
  const { sleeps, sleep } = sleeper();
  await assert.rejects(withRetry(fn, { attempts: 3, sleep }), (thrown) => thrown === errors[2]);
  assert.deepEqual([fn.calls, sleeps], [3, [1, 1]]);
});

test("one attempt means no retry", async () => {
  const fn = script(limited(1));
  const { sleeps, sleep } = sleeper();
  await assert.rejects(withRetry(fn, { attempts: 1, sleep }), RateLimited);
  assert.deepEqual([fn.calls, sleeps], [1, []]);
});

test("a wait longer than maxWaitS is not taken", async () => {
  const fn = script(limited(90));
  const { sleeps, sleep } = sleeper();
  await assert.rejects(withRetry(fn, { attempts: 3, maxWaitS: 30, sleep }), RateLimited);
  assert.deepEqual([fn.calls, sleeps], [1, []]);
});

test("without Retry-After it backs off with jitter within bounds", async () => {
  const rounds = [];
  for (let round = 0; round < 20; round += 1) {
    const { sleeps, sleep } = sleeper();
    assert.equal(await withRetry(script(limited(null), limited(null), limited(null)), { attempts: 4, maxWaitS: 0.75, sleep }), RESULT);
    const [first, second, third] = sleeps;
    assert.equal(sleeps.length, 3);
    assert.ok(first >= 0 && first <= 0.5);
    assert.ok(second >= 0 && second <= 0.75); // 1.0, capped by maxWaitS
    assert.ok(third >= 0 && third <= 0.75);
    rounds.push(sleeps.join());
  }
  assert.ok(new Set(rounds).size > 1); // jitter: twenty rounds do not all wait the same
});

test("a plain value and a synchronous function are fine", async () => {
  assert.equal(await withRetry(() => 7), 7);
});

test("the real sleep waits", async () => {
  const started = performance.now();
  assert.equal(await withRetry(script(limited(0.05)), { attempts: 2 }), RESULT);
  assert.ok(performance.now() - started >= 45);
});

test("settings are checked", async () => {
  await assert.rejects(withRetry(script(), { attempts: 0 }), /attempts/);
  await assert.rejects(withRetry(script(), { attempts: 1.5 }), /attempts/);
  await assert.rejects(withRetry(script(), { maxWaitS: -1 }), /maxWaitS/);
  await assert.rejects(withRetry(script(), { maxWaitS: Number.NaN }), /maxWaitS/);
});

test("a loop_detected refusal is typed RateLimited but never retried", async () => {
  const error = await sdkError(429, { error: { message: "The same request, again.", code: "loop_detected", repeats: 20, window_s: 60, retry_after: 30 } }, { "retry-after": "30" });
  const { sleeps, sleep } = sleeper();
  await assert.rejects(withRetry(script(error), { sleep }), (thrown) => thrown === error);
  assert.deepEqual(sleeps, []);
});
