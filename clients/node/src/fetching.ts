/**
 * The `fetch` that interception puts in place of the global one: calls to a provider's or a
 * vendor's host go to the gateway with the Outlay key; every other call is the original fetch's,
 * untouched. The SDK clients read the global fetch when they are constructed, so a client made
 * during interception keeps this one, and so keeps talking to the gateway after `restore()`.
 */

import type { Routes } from "./routes.js";

export type Fetch = typeof fetch;
type FetchInput = Parameters<Fetch>[0];

/**
 * `original` with calls to routed destinations sent to the gateway. An answer is handed back
 * only once `ready` has settled: the typed errors an SDK builds from it are installed by then.
 */
export function routingFetch(routes: Routes, original: Fetch, ready: Promise<unknown>): Fetch {
  async function fetchThroughGateway(input: FetchInput, init?: RequestInit): Promise<Response> {
    const target = routes.target(urlOf(input));
    if (target === null) {
      return original(input, init);
    }
    const response = await original(target, await rewritten(routes, input, init));
    await ready;
    return response;
  }
  return fetchThroughGateway as Fetch;
}

function urlOf(input: FetchInput): string {
  if (typeof input === "string") {
    return input;
  }
  return input instanceof URL ? input.href : input.url;
}

/**
 * The request's init for the gateway: everything as the caller gave it but the credential (and
 * Host, which names the vendor). A Request's body is read here: vendor and LLM calls are small
 * JSON or form bodies, and a body sent on as a stream would lose its Content-Length.
 */
async function rewritten(routes: Routes, input: FetchInput, init: RequestInit | undefined): Promise<RequestInit> {
  const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
  headers.delete("Host");
  routes.putCredentials(headers);
  if (!(input instanceof Request)) {
    return { ...init, headers };
  }
  const body = init?.body !== undefined ? init.body
    : input.body === null ? null : await input.arrayBuffer();
  return {
    method: input.method,
    signal: input.signal,
    redirect: input.redirect,
    keepalive: input.keepalive,
    ...init,
    headers,
    body,
  };
}
