// The Node.js agents of the conformance suite: the official openai and @anthropic-ai/sdk
// clients and the Vercel AI SDK (ai + @ai-sdk/openai + @ai-sdk/anthropic), each configured by
// the gateway's base URL and an Outlay key alone. Every scenario (chat, stream, a tool loop, a
// call refused 402) runs on a key of its own from OUTLAY_CONFORMANCE; the last line printed is
// what each saw, as JSON, for the Python test to check against the gateway's ledger.
import Anthropic from "@anthropic-ai/sdk";
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";
import OpenAI from "openai";

const { url, keys } = JSON.parse(process.env.OUTLAY_CONFORMANCE);
const ASK = "What is the weather in Paris?";
const WEATHER = "It is sunny in Paris.";
const SCHEMA = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
const OPENAI_MODEL = "gpt-4o-mini";
const CLAUDE = "claude-haiku-4-5";
const messages = [{ role: "user", content: ASK }];

async function refused(call) {
  try {
    await call();
    return { failed: "the call was not refused" };
  } catch (error) {
    return { status: error.status ?? error.statusCode ?? error.lastError?.statusCode };
  }
}

const openai = (key) => new OpenAI({ baseURL: `${url}/v1`, apiKey: key });
const claude = (key) => new Anthropic({ baseURL: url, apiKey: key });

const scenarios = {
  async openaiChat(key) {
    const answer = await openai(key).chat.completions.create({ model: OPENAI_MODEL, messages });
    return { text: answer.choices[0].message.content,
             usage: [answer.usage.prompt_tokens, answer.usage.completion_tokens] };
  },
  async openaiStream(key) {
    const stream = await openai(key).chat.completions.create({
      model: OPENAI_MODEL, messages, stream: true, stream_options: { include_usage: true } });
    let text = "", usage;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      if (chunk.usage) usage = [chunk.usage.prompt_tokens, chunk.usage.completion_tokens];
    }
    return { text, usage };
  },
  async openaiTools(key) {
    const client = openai(key);
    const tools = [{ type: "function", function: { name: "get_weather", parameters: SCHEMA } }];
    const first = await client.chat.completions.create({ model: OPENAI_MODEL, messages, tools });
    const call = first.choices[0].message.tool_calls[0];
    const second = await client.chat.completions.create({
      model: OPENAI_MODEL, tools, messages: [...messages, first.choices[0].message,
        { role: "tool", tool_call_id: call.id, content: WEATHER }] });
    return { call: [call.function.name, JSON.parse(call.function.arguments)],
             text: second.choices[0].message.content,
             usage: [first.usage.prompt_tokens + second.usage.prompt_tokens,
                     first.usage.completion_tokens + second.usage.completion_tokens] };
  },
  async openaiRefused(key) {
    return refused(() => openai(key).chat.completions.create({ model: OPENAI_MODEL, messages }));
  },
  async claudeChat(key) {
    const answer = await claude(key).messages.create({ model: CLAUDE, max_tokens: 1024, messages });
    return { text: answer.content[0].text,
             usage: [answer.usage.input_tokens, answer.usage.output_tokens] };
  },
  async claudeStream(key) {
    const stream = claude(key).messages.stream({ model: CLAUDE, max_tokens: 1024, messages });
    let text = "";
    stream.on("text", (piece) => { text += piece; });
    const final = await stream.finalMessage();
    return { text, usage: [final.usage.input_tokens, final.usage.output_tokens] };
  },
  async claudeTools(key) {
    const client = claude(key);
    const tools = [{ name: "get_weather", description: "The weather in a city",
                     input_schema: SCHEMA }];
    const first = await client.messages.create({ model: CLAUDE, max_tokens: 1024, messages, tools });
    const use = first.content.find((block) => block.type === "tool_use");
    const second = await client.messages.create({
      model: CLAUDE, max_tokens: 1024, tools, messages: [...messages,
        { role: "assistant", content: first.content },
        { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: WEATHER }] }] });
    return { call: [use.name, use.input], text: second.content[0].text,
             usage: [first.usage.input_tokens + second.usage.input_tokens,
                     first.usage.output_tokens + second.usage.output_tokens] };
  },
  async claudeRefused(key) {
    return refused(() => claude(key).messages.create({ model: CLAUDE, max_tokens: 1024, messages }));
  },
};

// The Vercel AI SDK: the same four scenarios on OpenAI (its Responses API, the SDK's default)
// and on Anthropic's messages
const vercelModels = {
  vercelOpenai: (key) => createOpenAI({ baseURL: `${url}/v1`, apiKey: key })(OPENAI_MODEL),
  vercelClaude: (key) => createAnthropic({ baseURL: `${url}/v1`, apiKey: key })(CLAUDE),
};
const calls = [];
const weather = tool({
  description: "The weather in a city",
  inputSchema: jsonSchema(SCHEMA),
  execute: async ({ city }) => { calls.push(city); return WEATHER; },
});
const usageOf = (usage) => [usage.inputTokens, usage.outputTokens];
for (const [name, model] of Object.entries(vercelModels)) {
  scenarios[`${name}Chat`] = async (key) => {
    const result = await generateText({ model: model(key), prompt: ASK });
    return { text: result.text, usage: usageOf(result.usage) };
  };
  scenarios[`${name}Stream`] = async (key) => {
    const result = streamText({ model: model(key), prompt: ASK });
    let text = "";
    for await (const piece of result.textStream) text += piece;
    return { text, usage: usageOf(await result.totalUsage) };
  };
  scenarios[`${name}Tools`] = async (key) => {
    calls.length = 0;
    const result = await generateText({ model: model(key), prompt: ASK,
                                        tools: { get_weather: weather }, stopWhen: stepCountIs(3) });
    return { call: ["get_weather", { city: calls[0] }], calls: calls.length, text: result.text,
             usage: usageOf(result.totalUsage) };
  };
  scenarios[`${name}Refused`] = async (key) =>
    refused(() => generateText({ model: model(key), prompt: ASK }));
}

const results = {};
for (const [name, run] of Object.entries(scenarios)) {
  try {
    results[name] = await run(keys[name]);
  } catch (error) {
    results[name] = { failed: `${error?.name}: ${error?.message}` };
  }
}
console.log(JSON.stringify(results));
