// Builds the package: dist/esm (ES modules) and dist/cjs (CommonJS), each with its type
// declarations. `npm ci` runs it (the `prepare` script); `--keep-if-no-compiler` lets a project
// that installs this folder as a dependency use the dist/ already built here, since npm does not
// install a linked folder's devDependencies.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const stamp = join(dist, ".built");

function compiler() {
  try {
    return createRequire(import.meta.url).resolve("typescript/bin/tsc");
  } catch {
    return null;
  }
}

const tsc = compiler();
if (tsc === null) {
  if (process.argv.includes("--keep-if-no-compiler") && existsSync(stamp)) {
    process.exit(0);
  }
  console.error("outlay: TypeScript is not installed here; run `npm ci` in clients/node first");
  process.exit(1);
}

rmSync(dist, { recursive: true, force: true });
for (const [config, format] of [["tsconfig.json", "module"], ["tsconfig.cjs.json", "commonjs"]]) {
  const run = spawnSync(process.execPath, [tsc, "-p", join(here, config)], { stdio: "inherit" });
  if (run.status !== 0) {
    process.exit(run.status ?? 1);
  }
  // each half says which module format its .js files are, whatever the importer's is
  const out = join(dist, format === "module" ? "esm" : "cjs");
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "package.json"), JSON.stringify({ type: format }) + "\n");
}
writeFileSync(stamp, new Date().toISOString() + "\n");
