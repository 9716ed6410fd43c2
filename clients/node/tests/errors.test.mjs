// §4.3's error table as the SDK reads it: every refusal the gateway writes, in both body
// shapes, becomes its typed error with its details; anything else does not.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  AccountNotAllowed, ApprovalRequired, BudgetExceeded, DestinationNotAllowed, errorFromAnswer,
  InvalidKey, InvalidRequest, KeyExpired, KeyRevoked, ModelNotAllowed, MoneyOutNotCapped,
  NotAllowed, OperationNotAllowed, OutlayError, RateLimited, Unavailable, VendorNotAllowed,
} from "outlay";
import { BUDGET, RATE, RID, refusal } from "./gateway.mjs";

const RESETS = "2026-07-01T00:00:00Z";
// one refusal per line of the table (every rate code), and the class it must come back as
const REFUSALS = [
  [401, { code: "invalid_api_key", message: "Incorrect or unknown Outlay API key." }, InvalidKey],
  [401, { code: "key_revoked", message: "The Outlay key key_1 has been revoked." }, KeyRevoked],
  [401, { code: "key_expired", message: "The Outlay key key_1 expired.", expired_at: RESETS }, KeyExpired],
  [403, { code: "model_not_allowed", message: "Model 'gpt-4o' is not allowed.", allowed: ["gpt-4o-mini", "claude-*"], scope: "agent:a" }, ModelNotAllowed],
  [403, { code: "vendor_not_allowed", message: "Vendor 'twilio' is not allowed.", allowed: ["stripe"], scope: "agent:a" }, VendorNotAllowed],
  [403, { code: "approval_required", message: "A human must approve this call.", approval_id: "apr_42", scope: "agent:a", reason: "budget_exceeded" }, ApprovalRequired],
  [403, { code: "operation_not_allowed", message: "POST /v1/refunds on stripe is not allowed for agent:a.", vendor: "stripe", method: "POST", path: "/v1/refunds", allowed: ["GET /v1/charges/*"], scope: "agent:a" }, OperationNotAllowed],
  [403, { code: "account_not_allowed", message: "The stripe account 'acct_1Other' is not allowed.", vendor: "stripe", account: "acct_1Other", allowed: ["acct_1Mine"], scope: "agent:a" }, AccountNotAllowed],
  [403, { code: "destination_not_allowed", message: "The twilio destination '+4420' is not allowed.", vendor: "twilio", destination: "+4420", allowed: ["+1*"], scope: "agent:a" }, DestinationNotAllowed],
  [403, { code: "money_out_not_capped", message: "No scope of this call caps money moved out.", vendor: "stripe", scope: "agent:a", flow: "out" }, MoneyOutNotCapped],
  [403, { code: "approval_mismatch", message: "Approval apr_42 was already used.", approval_id: "apr_42", state: "used", differs: ["state"] }, OutlayError],
  ...["rate_limit_exceeded", "hourly_rate_limit_exceeded", "daily_rate_limit_exceeded", "token_rate_limit_exceeded"]
    .map((code) => [429, { ...RATE, code }, RateLimited]),
  [429, { code: "concurrency_limit_exceeded", message: "Too many calls in flight.", scope: "key:key_1", limit: 2, retry_after: 1 }, RateLimited],
  [429, { code: "loop_detected", message: "The same request, again.", scope: "agent:a", repeats: 20, window_s: 60, retry_after: 30 }, RateLimited],
  [429, { code: "too_many_tag_values", message: "tag:customer=* already tracks 100 values.", scope: "tag:customer=*", limit: 100, tag: "customer", retry_after: 60 }, RateLimited],
  [402, BUDGET, BudgetExceeded],
  [400, { code: "price_unknown", message: "No price is known for model 'x'." }, InvalidRequest],
  [400, { code: "invalid_request", message: "The request body is empty.", param: "body" }, InvalidRequest],
  [413, { code: "request_too_large", message: "The request body is too large." }, InvalidRequest],
  [408, { code: "request_timeout", message: "The request body did not arrive in time." }, InvalidRequest],
  [400, { code: "missing_tag", message: "agent:a requires every call to carry the tag 'customer'.", tag: "customer", scope: "agent:a" }, InvalidRequest],
  [502, { code: "upstream_unavailable", message: "No endpoint answered." }, Unavailable],
  [503, { code: "enforcement_unavailable", message: "The state store is unreachable." }, Unavailable],
];

function typed(answer) {
  return errorFromAnswer(answer.status, answer.headers, answer.body);
}

for (const flavor of ["openai", "anthropic"]) {
  describe(`refusals in ${flavor}'s shape`, () => {
    for (const [status, error, cls] of REFUSALS) {
      test(`${status} ${error.code} is ${cls.name}`, () => {
        const retryAfter = error.retry_after === undefined ? {} : { "Retry-After": String(error.retry_after) };
        const got = typed(refusal(status, error, { flavor, headers: retryAfter }));

        assert.equal(got.constructor, cls);
        assert.ok(got instanceof OutlayError && got instanceof Error);
        assert.deepEqual([got.status, got.code, got.message, got.requestId, got.name], [status, error.code, error.message, RID, cls.name]);
        const { code, message, param, ...details } = error;
        assert.deepEqual({ ...got.details }, details);
      });
    }

    test("BudgetExceeded carries the exact spend, cap and reset", () => {
      const got = typed(refusal(402, BUDGET, { flavor }));
      assert.ok(got instanceof BudgetExceeded);
      assert.deepEqual([got.scope, got.period, got.spentUsd, got.capUsd], ["agent:a", "day", "4.5", "5"]);
      assert.equal(got.resetsAt.toISOString(), "2026-07-01T00:00:00.000Z");
    });

    test("RateLimited carries retryAfter, scope and limit", () => {
      const got = typed(refusal(429, RATE, { flavor, headers: { "Retry-After": "13" } }));
      assert.ok(got instanceof RateLimited);
      assert.deepEqual([got.retryAfter, got.scope, got.limit], [13, "key:key_1", 7]);
    });

    test("least privilege refusals name what was refused; one check covers every allow-list", () => {
      const byCode = (code) => {
        const [status, error] = REFUSALS.find(([, e]) => e.code === code);
        return typed(refusal(status, error, { flavor }));
      };
      const operation = byCode("operation_not_allowed");
      const account = byCode("account_not_allowed");
      const destination = byCode("destination_not_allowed");
      const moneyOut = byCode("money_out_not_capped");
      assert.deepEqual([operation.vendor, operation.method, operation.path, operation.allowed],
        ["stripe", "POST", "/v1/refunds", ["GET /v1/charges/*"]]);
      assert.deepEqual([account.account, account.allowed], ["acct_1Other", ["acct_1Mine"]]);
      assert.deepEqual([destination.destination, destination.allowed], ["+4420", ["+1*"]]);
      assert.deepEqual([moneyOut.vendor, moneyOut.scope], ["stripe", "agent:a"]);
      for (const code of ["model_not_allowed", "vendor_not_allowed", "operation_not_allowed", "account_not_allowed", "destination_not_allowed"]) {
        assert.ok(byCode(code) instanceof NotAllowed, code);
      }
      assert.ok(!(moneyOut instanceof NotAllowed));
    });

    test("allow-lists, approval id and expiry are read", () => {
      const [, model, , vendor, , approval, , expired] = [3, 3, 4, 4, 5, 5, 2, 2]
        .map((i) => typed(refusal(REFUSALS[i][0], REFUSALS[i][1], { flavor })));
      assert.deepEqual(model.allowed, ["gpt-4o-mini", "claude-*"]);
      assert.deepEqual(vendor.allowed, ["stripe"]);
      assert.equal(approval.approvalId, "apr_42");
      assert.equal(expired.expiredAt.toISOString(), "2026-07-01T00:00:00.000Z");
    });
  });
}

test("the Retry-After header wins over the body, and the body serves without it", () => {
  const withHeader = typed(refusal(429, RATE, { headers: { "Retry-After": "2" } }));
  const without = typed(refusal(429, RATE));
  assert.deepEqual([withHeader.retryAfter, without.retryAfter], [2, 13]);
});

for (const value of ["²", "٣", "1e3", "-1", "NaN", "Infinity", "0x10", "soon", ""]) {
  test(`a Retry-After of ${JSON.stringify(value)} is none: the body's stands`, () => {
    assert.equal(typed(refusal(429, RATE, { headers: { "Retry-After": value } })).retryAfter, 13);
    assert.equal(errorFromAnswer(429, { "Retry-After": value }, null).retryAfter, null);
  });
}

test("an HTTP-date Retry-After is seconds from now", () => {
  const when = new Date(Date.now() + 30_000).toUTCString();
  const got = errorFromAnswer(429, { "retry-after": when }, null);
  assert.ok(got.retryAfter >= 25 && got.retryAfter <= 30, String(got.retryAfter));
});

test("an expired key is a revoked key, and both are invalid keys", () => {
  assert.ok(KeyExpired.prototype instanceof KeyRevoked);
  assert.ok(KeyRevoked.prototype instanceof InvalidKey);
  assert.ok(!(new BudgetExceeded("x") instanceof RateLimited));
  assert.ok(new KeyExpired("x") instanceof InvalidKey);
});

test("a 402 or 429 without a code is still typed by its status", () => {
  const budget = errorFromAnswer(402, null, "<html>Payment Required</html>");
  const limited = errorFromAnswer(429, { "Retry-After": "4" }, null);
  assert.ok(budget instanceof BudgetExceeded);
  assert.deepEqual([budget.code, budget.spentUsd, budget.message], ["budget_exceeded", null, "The Outlay gateway refused the call (402)."]);
  assert.ok(limited instanceof RateLimited);
  assert.deepEqual([limited.code, limited.retryAfter], ["rate_limit_exceeded", 4]);
});

const FOREIGN = {
  "stripe's card decline": [402, { error: { type: "card_error", code: "card_declined", message: "Declined." } }],
  "openai's quota": [429, { error: { type: "insufficient_quota", code: "insufficient_quota", message: "Quota." } }],
  "a 401 without a body": [401, null],
  "a 403 without a code": [403, { error: { message: "Forbidden." } }],
  "a 404": [404, { error: { type: "not_found_error", message: "No such model." } }],
  "a 500": [500, "oops"],
  "a 2xx": [200, { error: { code: "budget_exceeded", message: "a 2xx is never a refusal" } }],
  "a code that is not text": [402, { error: { code: 402, message: "?" } }],
};
for (const [name, [status, body]] of Object.entries(FOREIGN)) {
  test(`not an Outlay refusal: ${name}`, () => {
    assert.equal(errorFromAnswer(status, {}, body), null);
  });
}

test("the openai SDK's unwrapped error object is read too", () => {
  const got = errorFromAnswer(402, {}, { message: "Budget exceeded.", type: "budget_exceeded", code: "budget_exceeded", param: null, cap_usd: "5" });
  assert.ok(got instanceof BudgetExceeded);
  assert.equal(got.capUsd, "5");
});

test("errors can be made directly with their defaults, and bad details read as null", () => {
  const error = new BudgetExceeded("over", { details: { spent_usd: "1.25", cap_usd: 2 } });
  assert.deepEqual([error.status, error.code, error.requestId, error.spentUsd, error.capUsd, error.resetsAt], [402, "budget_exceeded", null, "1.25", "2", null]);
  const bad = new BudgetExceeded("over", { details: { spent_usd: "lots", cap_usd: 1e-7, resets_at: "soon", period: 3 } });
  assert.deepEqual([bad.spentUsd, bad.capUsd, bad.resetsAt, bad.period, bad.scope], [null, null, null, null, null]);
  const limited = new RateLimited("slow", { details: { retry_after: "1.5", limit: 1.5 } });
  assert.deepEqual([limited.retryAfter, limited.limit], [1.5, null]);
  assert.equal(new RateLimited("slow", { details: { retry_after: -1 } }).retryAfter, null);
  assert.equal(new KeyExpired("gone", { details: { expired_at: "2026-07-01T00:00:00" } }).expiredAt.toISOString(), "2026-07-01T00:00:00.000Z");
  assert.throws(() => { error.details.cap_usd = 3; }, TypeError);
});

test("instanceof holds for nothing but errors and joined errors", () => {
  for (const value of [null, undefined, 3, "BudgetExceeded", {}, new Error("x"), { code: "budget_exceeded", status: 402 }]) {
    assert.equal(value instanceof OutlayError, false);
    assert.equal(value instanceof BudgetExceeded, false);
  }
});
