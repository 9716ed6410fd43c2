/**
 * `new Outlay({key, baseUrl}).interceptAll()` and `restore()`: the whole process's LLM and
 * vendor traffic through the gateway, and back, without touching the agent's code.
 */

import { putBack, replaceIn, sdkEnvironment, type SavedEnvironment } from "./environment.js";
import { routingFetch, type Fetch } from "./fetching.js";
import { typeLlmErrors } from "./llmClients.js";
import { Patches } from "./patches.js";
import { DEFAULT_GATEWAY, Routes, type VendorHosts } from "./routes.js";

export interface OutlayOptions {
  /** The agent's Outlay key (olk_…). */
  key: string;
  /** The gateway's root URL; http://127.0.0.1:8800 when not given. */
  baseUrl?: string;
  /** More vendor hosts: a host to a vendor name, or a host to null to leave it alone. */
  vendors?: VendorHosts;
}

interface Interception {
  readonly patches: Patches;
  readonly environment: SavedEnvironment;
}

/**
 * The one interception of the process. Replacing globals is process-wide by nature, and the
 * ES module and CommonJS builds of this package may both be loaded, so it is kept on
 * globalThis under a registered symbol where either build's restore() finds it.
 */
const CURRENT = Symbol.for("outlay.interception");
type Holder = { [CURRENT]?: Interception };

export class Outlay {
  private readonly routes: Routes;

  /** Checks the settings; throws a TypeError on a malformed key, base URL or vendor host. */
  constructor(options: OutlayOptions) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError("new Outlay({key, baseUrl}) takes an options object");
    }
    this.routes = Routes.build(options.key, options.baseUrl ?? DEFAULT_GATEWAY, options.vendors ?? {});
  }

  /** The gateway's root URL, as the calls are sent to it. */
  get baseUrl(): string {
    return this.routes.gateway;
  }

  /**
   * Send the official `openai` and `@anthropic-ai/sdk` clients constructed from now on, and
   * `fetch` calls to api.stripe.com, api.twilio.com and api.resend.com (and the `vendors`
   * added), through the gateway with the Outlay key; their refusals are thrown as typed
   * errors. Calling it again, on this or another Outlay, replaces the settings; `restore()`
   * undoes it.
   */
  interceptAll(): void {
    restoreProcess(); // never a wrapper around a wrapper
    const original = globalThis.fetch;
    if (typeof original !== "function") {
      throw new Error("outlay needs Node.js 18 or newer, whose global fetch it routes");
    }
    const patches = new Patches();
    let environment: SavedEnvironment | null = null;
    try {
      const typed = typeLlmErrors(patches);
      patches.replace<Fetch>(globalThis, "fetch", (current) => routingFetch(this.routes, current, typed));
      environment = replaceIn(process.env, sdkEnvironment(this.routes));
    } catch (error) {
      patches.undo();
      if (environment !== null) {
        putBack(process.env, environment);
      }
      throw error;
    }
    const current: Interception = { patches, environment };
    Object.defineProperty(globalThis, CURRENT, { value: current, configurable: true, writable: true });
  }

  /**
   * Put back the global fetch, the SDKs' methods and the environment exactly as they were;
   * nothing happens when nothing is intercepted. Clients constructed while interception was
   * on keep talking to the gateway.
   */
  restore(): void {
    restoreProcess();
  }
}

function restoreProcess(): void {
  const holder = globalThis as Holder;
  const current = holder[CURRENT];
  if (current !== undefined) {
    delete holder[CURRENT];
    current.patches.undo();
    putBack(process.env, current.environment);
  }
}
