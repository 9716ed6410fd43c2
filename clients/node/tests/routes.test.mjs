// Which destinations go through the gateway, where to, and as whom.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Outlay } from "outlay";
import { Routes } from "../dist/esm/routes.js";

const GW = "http://gw.test:8800";
const KEY = "olk_routed";
const routes = Routes.build(KEY, GW, { "api.acme.example": "acme", "API.Resend.com": null });

test("providers' hosts go to the gateway's root, vendors' to /vendors/<vendor>/", () => {
  const cases = {
    "https://api.openai.com/v1/chat/completions": `${GW}/v1/chat/completions`,
    "https://api.anthropic.com/v1/messages?beta=true": `${GW}/v1/messages?beta=true`,
    "https://api.stripe.com/v1/payment_intents?expand[]=x": `${GW}/vendors/stripe/v1/payment_intents?expand[]=x`,
    "https://api.twilio.com:443/2010-04-01/Accounts/AC1/Messages.json": `${GW}/vendors/twilio/2010-04-01/Accounts/AC1/Messages.json`,
    "https://API.STRIPE.COM/v1/customers/cus%2F1": `${GW}/vendors/stripe/v1/customers/cus%2F1`,
    "https://api.acme.example/v1/jobs": `${GW}/vendors/acme/v1/jobs`,
    "https://api.acme.example": `${GW}/vendors/acme/`,
    [`${GW}/v1/chat/completions`]: `${GW}/v1/chat/completions`, // the gateway's own LLM routes
  };
  for (const [url, target] of Object.entries(cases)) {
    assert.equal(routes.target(url), target, url);
  }
});

test("every other destination is left alone", () => {
  for (const url of ["https://api.resend.com/emails", "https://example.com/v1/x", "https://api.stripe.com.evil.example/v1",
    `${GW}/admin/v1/keys`, `${GW}/vendors/stripe/v1/x`, "http://gw.test:8801/v1/x", "ftp://api.stripe.com/x", "not a url", "/v1/relative"]) {
    assert.equal(routes.target(url), null, url);
  }
});

test("a bearer credential or x-api-key becomes the key; basic auth keeps its user name", () => {
  const bearer = new Headers({ Authorization: "Bearer sk_live_x", "X-Api-Key": "sk-ant", Other: "kept" });
  routes.putCredentials(bearer);
  assert.deepEqual([bearer.get("authorization"), bearer.get("x-api-key"), bearer.get("other")], [`Bearer ${KEY}`, KEY, "kept"]);

  const basic = new Headers({ Authorization: `Basic ${Buffer.from("ACsid:token").toString("base64")}` });
  routes.putCredentials(basic);
  assert.equal(Buffer.from(basic.get("authorization").slice(6), "base64").toString(), `ACsid:${KEY}`);

  for (const garbage of ["Basic !!!", "Basic " + Buffer.from([0xff, 0xfe]).toString("base64")]) {
    const bad = new Headers({ Authorization: garbage });
    routes.putCredentials(bad);
    assert.equal(Buffer.from(bad.get("authorization").slice(6), "base64").toString(), `:${KEY}`);
  }

  const none = new Headers();
  routes.putCredentials(none);
  assert.deepEqual([none.get("authorization"), none.has("x-api-key")], [`Bearer ${KEY}`, false]);
});

test("the gateway URL is normalised and checked", () => {
  assert.equal(new Outlay({ key: KEY, baseUrl: " http://GW.test:8800/ " }).baseUrl, "http://gw.test:8800");
  assert.equal(new Outlay({ key: KEY, baseUrl: "https://gw.test/outlay/" }).baseUrl, "https://gw.test/outlay");
  assert.equal(new Outlay({ key: KEY }).baseUrl, "http://127.0.0.1:8800");
  for (const baseUrl of ["gw.test:8800", "ftp://gw.test", "http://gw.test/?a=1", "http://gw.test/#x", "http://u:p@gw.test", "", 8800]) {
    assert.throws(() => new Outlay({ key: KEY, baseUrl }), /baseUrl must be the gateway's root URL/, String(baseUrl));
  }
});

test("the key, the vendors and the options are checked", () => {
  for (const key of ["", undefined, 3, "olk x", "olk_é"]) {
    assert.throws(() => new Outlay({ key }), /key must be the Outlay key/, String(key));
  }
  assert.throws(() => new Outlay({ key: KEY, vendors: { "https://api.acme.example": "acme" } }), /not a host name/);
  assert.throws(() => new Outlay({ key: KEY, vendors: { "api.acme.example:443": "acme" } }), /not a host name/);
  assert.throws(() => new Outlay({ key: KEY, vendors: { "api.acme.example": "ac me" } }), /not a vendor name/);
  assert.throws(() => new Outlay({ key: KEY, vendors: { "api.acme.example": 3 } }), /not a vendor name/);
  assert.throws(() => new Outlay(), /options object/);
});
