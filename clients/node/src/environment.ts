/**
 * The SDKs' environment defaults while intercepting. A client constructor cannot be replaced
 * from outside a module (an ES module's exports are read-only bindings), but both SDKs read
 * their key and base URL from the environment when they are not given one, and `new OpenAI()`
 * throws without a key; so the gateway's are put there, and the exact previous values back.
 */

import type { Routes } from "./routes.js";

/** What the environment held before: a value, or undefined for a variable that was not set. */
export type SavedEnvironment = ReadonlyMap<string, string | undefined>;

/** The variables interception sets (a value) or removes (undefined). */
export function sdkEnvironment(routes: Routes): ReadonlyMap<string, string | undefined> {
  return new Map([
    ["OPENAI_API_KEY", routes.key],
    ["OPENAI_BASE_URL", routes.openaiBaseUrl],
    ["ANTHROPIC_API_KEY", routes.key],
    ["ANTHROPIC_BASE_URL", routes.anthropicBaseUrl],
    // the Anthropic client would send it beside the key (and warn that both are set)
    ["ANTHROPIC_AUTH_TOKEN", undefined],
  ]);
}

/** Set `wanted` in `env`; what it held before, for `putBack`. */
export function replaceIn(env: NodeJS.ProcessEnv, wanted: ReadonlyMap<string, string | undefined>): SavedEnvironment {
  const saved = new Map<string, string | undefined>();
  for (const [name, value] of wanted) {
    saved.set(name, Object.prototype.hasOwnProperty.call(env, name) ? env[name] : undefined);
    assign(env, name, value);
  }
  return saved;
}

export function putBack(env: NodeJS.ProcessEnv, saved: SavedEnvironment): void {
  for (const [name, value] of saved) {
    assign(env, name, value);
  }
}

function assign(env: NodeJS.ProcessEnv, name: string, value: string | undefined): void {
  if (value === undefined) {
    delete env[name];
  } else {
    env[name] = value;
  }
}
