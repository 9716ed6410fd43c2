// build.mjs without a compiler: a linked install keeps the dist/ built here, and nothing else
// passes for a build.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

const root = mkdtempSync(join(tmpdir(), "outlay-build-"));
after(() => rmSync(root, { recursive: true, force: true }));

function build(built, ...args) {
  const dir = mkdtempSync(join(root, "pkg-"));
  copyFileSync(new URL("../build.mjs", import.meta.url), join(dir, "build.mjs"));
  if (built) {
    mkdirSync(join(dir, "dist"));
    writeFileSync(join(dir, "dist", ".built"), "then\n");
  }
  return spawnSync(process.execPath, [join(dir, "build.mjs"), ...args], { encoding: "utf8", timeout: 30_000 });
}

test("without TypeScript, a built dist/ is kept when asked to", () => {
  assert.equal(build(true, "--keep-if-no-compiler").status, 0);
});

test("without TypeScript, anything else fails and says what to do", () => {
  for (const run of [build(false, "--keep-if-no-compiler"), build(true)]) {
    assert.equal(run.status, 1);
    assert.match(run.stderr, /run `npm ci` in clients\/node first/);
  }
});
