// The agent loop of the README's "Node.js SDK" section, type-checked by `npm test` against the
// built declarations; tests/readme.test.mjs checks that the README shows exactly this code.
import OpenAI from "openai";
import { BudgetExceeded, Outlay, RateLimited, withRetry } from "outlay";

const outlay = new Outlay({ key: process.env.OUTLAY_KEY!, baseUrl: "http://127.0.0.1:8800" });
outlay.interceptAll();         // openai, @anthropic-ai/sdk, and fetch to Stripe, Twilio, Resend
const openai = new OpenAI();   // no key or base URL to give: the gateway's, with the Outlay key

const tools: OpenAI.ChatCompletionTool[] = [{ type: "function", function: {
  name: "refund", parameters: { type: "object", properties: { payment_intent: { type: "string" } } } } }];
const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "Refund order 42." }];
try {
  for (let turn = 0; turn < 10; turn++) {
    const reply = await withRetry(   // waits out a 429's Retry-After; a 402 is thrown at once
      () => openai.chat.completions.create({ model: "gpt-4o-mini", messages, tools }),
      { attempts: 3, maxWaitS: 30 });
    const message = reply.choices[0]!.message;
    messages.push(message);
    if (!message.tool_calls?.length) break;
    for (const call of message.tool_calls) {
      if (call.type !== "function") continue;
      const { payment_intent } = JSON.parse(call.function.arguments);
      const refund = await fetch("https://api.stripe.com/v1/refunds", {  // → /vendors/stripe
        method: "POST", body: new URLSearchParams({ payment_intent }) });
      messages.push({ role: "tool", tool_call_id: call.id, content: await refund.text() });
    }
  }
} catch (error) {
  if (error instanceof BudgetExceeded) {      // also an OpenAI.APIError
    console.log(`spent $${error.spentUsd} of $${error.capUsd}; resets ${error.resetsAt}`);
  } else if (error instanceof RateLimited) {
    console.log(`rate limited; retry in ${error.retryAfter} s`);
  } else {
    throw error;
  }
} finally {
  outlay.restore();            // clients made from now on go where they always did
}
