// The same agent as a CommonJS module (require("outlay"), require("openai")), run by
// tests/e2e/test_e2e_node_sdk.py: a call reaches the gateway, a 402 is BudgetExceeded.
const OpenAI = require("openai");
const { BudgetExceeded, Outlay } = require("outlay");

const { url, keys } = JSON.parse(process.env.OUTLAY_E2E);

async function main() {
  const results = {};
  for (const scenario of ["chat", "budget"]) {
    const outlay = new Outlay({ key: keys[scenario], baseUrl: url });
    outlay.interceptAll();
    try {
      const client = new OpenAI({ maxRetries: 0 });
      const call = client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], max_tokens: 5 });
      results[scenario] = await call.then(
        (completion) => ({ content: completion.choices[0].message.content }),
        (error) => ({ budgetExceeded: error instanceof BudgetExceeded, openaiError: error instanceof OpenAI.APIError, capUsd: error.capUsd ?? null, message: String(error) }),
      );
    } finally {
      outlay.restore();
    }
  }
  console.log(JSON.stringify(results));
}

main();
