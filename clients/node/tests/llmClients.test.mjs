// Finding the SDKs' builds as the application resolves them, and patching them only while the
// interception lasts, including the ES module half that arrives after an import().
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { esmEntry, typeLlmErrors } from "../dist/esm/llmClients.js";
import { Patches } from "../dist/esm/patches.js";

const root = mkdtempSync(join(tmpdir(), "outlay-sdks-"));
after(() => rmSync(root, { recursive: true, force: true }));

/** A folder with node_modules/<name> holding `files`; its base for createRequire. */
function application(name, files) {
  const app = join(root, `app-${Math.random().toString(16).slice(2)}`);
  const dir = join(app, "node_modules", name);
  mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(join(dir, file, ".."), { recursive: true });
    writeFileSync(join(dir, file), typeof text === "string" ? text : JSON.stringify(text));
  }
  return { base: join(app, "[outlay]"), dir };
}

test("the ES module entry is read from the exports' import conditions", () => {
  const shapes = [
    [{ ".": { require: { types: "./a.d.ts", default: "./index.js" }, types: "./a.d.mts", default: "./index.mjs" } }, "index.mjs"],
    [{ ".": { node: { import: "./node.mjs", require: "./index.js" } } }, "node.mjs"],
    [{ import: "./flat.mjs", require: "./index.js" }, "flat.mjs"],
    [{ ".": [{ worker: "./w.mjs" }, "./fallback.mjs"] }, "fallback.mjs"],
    ["./only.js", "only.js"],
    [{ ".": { browser: "./b.mjs" } }, null],
  ];
  for (const [exports, expected] of shapes) {
    const { dir } = application("openai", { "package.json": { name: "openai", exports }, "index.js": "" });
    const entry = esmEntry(join(dir, "index.js"), "openai");
    assert.equal(entry, expected === null ? null : join(dir, expected), JSON.stringify(exports));
  }
  const { dir } = application("openai", { "package.json": { name: "openai" }, "lib/package.json": { type: "commonjs" }, "lib/index.js": "" });
  assert.equal(esmEntry(join(dir, "lib", "index.js"), "openai"), null); // no exports: one build
  assert.equal(esmEntry(join(root, "nowhere", "index.js"), "openai"), null);
});

test("SDKs that are not installed, or do not load, are skipped", async () => {
  const broken = application("openai", {
    "package.json": { name: "openai", exports: { ".": { require: "./index.cjs", default: "./index.mjs" } } },
    "index.cjs": "throw new Error('needs a newer Node');",
    "index.mjs": "throw new Error('needs a newer Node');",
  });
  const patches = new Patches();

  await typeLlmErrors(patches, [join(root, "empty", "[outlay]"), broken.base]);

  assert.equal(patches.size, 0);
});

test("each build of each SDK is patched once, however many bases find it", async () => {
  const original = OpenAI.prototype.makeStatusError;
  const patches = new Patches();
  const base = join(process.cwd(), "[outlay]");

  await typeLlmErrors(patches, [base, base, join(process.cwd(), "tests", "[outlay]")]);

  // openai and @anthropic-ai/sdk, each as CommonJS and as an ES module
  assert.equal(patches.size, 4);
  assert.notEqual(OpenAI.prototype.makeStatusError, original);
  patches.undo();
  assert.equal(OpenAI.prototype.makeStatusError, original);
});

test("an ES module half that arrives after undo() is not patched", async () => {
  const before = [OpenAI.prototype.makeStatusError, Object.getPrototypeOf(Anthropic.prototype).makeStatusError];
  const patches = new Patches();

  const typed = typeLlmErrors(patches);
  patches.undo(); // restore() before the import() settled
  await typed;

  assert.deepEqual([OpenAI.prototype.makeStatusError, Object.getPrototypeOf(Anthropic.prototype).makeStatusError], before);
  assert.equal(patches.size, 0);
  assert.equal(patches.replace(OpenAI.prototype, "makeStatusError", () => assert.fail("wrapped")), false);
});
