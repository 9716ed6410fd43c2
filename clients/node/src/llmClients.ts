/**
 * Typed errors from the official `openai` and `@anthropic-ai/sdk` clients: their
 * `makeStatusError` (the one method both SDKs build every status error in) is wrapped so that
 * a refusal of the gateway comes out as one error that is the SDK's and Outlay's at once.
 *
 * Each SDK ships a CommonJS and an ES module build, and a process may hold both (an ES module
 * agent and a CommonJS library), each with its own classes; so both are patched, as the
 * application resolves them: from its entry script's folder and from the working directory
 * (this package may be linked from elsewhere and see other copies from its own folder).
 * CommonJS modules load synchronously; ES modules only through `import()`, so that half is a
 * promise, which the routing fetch awaits before it hands back an answer.
 */

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

import { errorFromAnswer, type HeadersLike } from "./answers.js";
import { joinInto } from "./joined.js";
import type { Patches } from "./patches.js";

interface Sdk {
  readonly name: string;
  /** Exported client classes; the owner of `makeStatusError` up their prototype chain is patched. */
  readonly clients: readonly string[];
}

export const SDKS: readonly Sdk[] = [
  { name: "openai", clients: ["OpenAI"] },
  { name: "@anthropic-ai/sdk", clients: ["Anthropic", "BaseAnthropic"] },
];

// Node's conditions for an ES module import; "default" is always taken
const IMPORT_CONDITIONS = ["node", "import"];

type MakeStatusError = (this: unknown, status: number, body: unknown, message: unknown,
                        headers: HeadersLike, ...rest: unknown[]) => object;

/**
 * Patch every copy of the SDKs the application can load. The CommonJS copies are patched when
 * this returns; the promise settles (never rejects) when the ES module copies are too.
 */
export function typeLlmErrors(patches: Patches, bases: readonly string[] = applicationBases()): Promise<void> {
  const patched = new Set<object>();
  const imports: Promise<void>[] = [];
  const seen = new Set<string>();
  for (const base of bases) {
    const load = createRequire(base);
    for (const sdk of SDKS) {
      let entry: string;
      try {
        entry = load.resolve(sdk.name);
      } catch {
        continue; // not installed where the application would find it
      }
      if (!seen.has(entry)) {
        seen.add(entry);
        let module: unknown;
        try {
          module = load(sdk.name);
        } catch {
          module = null; // one that does not load (a Node too old for it) is one nobody uses
        }
        patchModule(patches, patched, sdk, module);
      }
      const esm = esmEntry(entry, sdk.name);
      if (esm !== null && !seen.has(esm)) {
        seen.add(esm);
        imports.push(import(pathToFileURL(esm).href).then(
          (module: unknown) => patchModule(patches, patched, sdk, module),
          () => undefined, // an ES build that does not load is one the application cannot use
        ));
      }
    }
  }
  return Promise.all(imports).then(() => undefined);
}

/** Where the application resolves packages from: its entry script's folder, the working one. */
export function applicationBases(): string[] {
  const bases = [join(process.cwd(), "[outlay]")];
  const entry = process.argv[1];
  if (entry) {
    bases.unshift(resolve(entry));
  }
  return bases;
}

function patchModule(patches: Patches, patched: Set<object>, sdk: Sdk, module: unknown): void {
  // a CommonJS build may export the client class itself, with the rest as its properties
  if ((typeof module !== "object" && typeof module !== "function") || module === null) {
    return;
  }
  for (const name of sdk.clients) {
    const cls: unknown = (module as Record<string, unknown>)[name];
    if (typeof cls !== "function") {
      continue;
    }
    const owner = ownerOf(cls.prototype as object, "makeStatusError");
    if (owner !== null && !patched.has(owner)) {
      if (patches.replace(owner, "makeStatusError", typedStatusErrors)) {
        patched.add(owner);
      }
    }
  }
}

function ownerOf(prototype: object | null, name: string): object | null {
  for (let p = prototype; p !== null && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    if (Object.prototype.hasOwnProperty.call(p, name)) {
      return p;
    }
  }
  return null;
}

function typedStatusErrors(make: MakeStatusError): MakeStatusError {
  return function makeStatusError(this: unknown, status, body, message, headers, ...rest) {
    const error = make.call(this, status, body, message, headers, ...rest);
    const typed = errorFromAnswer(status, headers, body);
    return typed === null ? error : joinInto(error, typed);
  };
}

/** The ES module file `import(name)` loads, for the package whose CommonJS entry is `entry`. */
export function esmEntry(entry: string, name: string): string | null {
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    let manifest: { name?: unknown; exports?: unknown };
    try {
      manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as typeof manifest;
    } catch {
      continue;
    }
    if (manifest.name !== name) {
      continue; // a nested package.json that only sets "type"
    }
    const root = rootExport(manifest.exports);
    const target = root === undefined ? null : conditional(root);
    return target === null ? null : join(dir, target);
  }
  return null;
}

function rootExport(exports: unknown): unknown {
  if (typeof exports === "object" && exports !== null && !Array.isArray(exports)) {
    const keys = Object.keys(exports);
    if (keys.some((key) => key.startsWith("."))) {
      return (exports as Record<string, unknown>)["."];
    }
  }
  return exports; // a string, or the conditions of "." itself
}

/** Node's conditional exports for an import: the first matching condition in key order. */
function conditional(target: unknown): string | null {
  if (typeof target === "string") {
    return target;
  }
  if (Array.isArray(target)) {
    for (const item of target) {
      const found = conditional(item);
      if (found !== null) {
        return found;
      }
    }
    return null;
  }
  if (typeof target === "object" && target !== null) {
    for (const [condition, value] of Object.entries(target)) {
      if (condition === "default" || IMPORT_CONDITIONS.includes(condition)) {
        const found = conditional(value);
        if (found !== null) {
          return found;
        }
      }
    }
  }
  return null;
}
