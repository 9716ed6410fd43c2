// The README's agent loop is tests/agent-loop.mts, which `npm test` type-checks: the two agree.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

test("the README shows the type-checked agent loop, verbatim", () => {
  const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8");
  const loop = readFileSync(new URL("./agent-loop.mts", import.meta.url), "utf8");
  const code = loop.split("\n").filter((line) => !line.startsWith("// ")).join("\n").trim();
  assert.ok(code.includes("interceptAll()") && code.includes("restore()"));
  assert.ok(readme.includes("```ts\n" + code + "\n```"), "README.md's Node.js SDK section differs from tests/agent-loop.mts");
});
