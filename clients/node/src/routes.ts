/**
 * Which destinations go through the gateway, where to, and with which credential: the pure
 * half of interception (fetching.ts does the I/O).
 */

export const DEFAULT_GATEWAY = "http://127.0.0.1:8800"; // the gateway's default listen address

/** The providers' hosts: the gateway serves their paths (/v1/…) as they are. */
export const LLM_HOSTS: readonly string[] = ["api.openai.com", "api.anthropic.com"];

export const DEFAULT_VENDOR_HOSTS: Readonly<Record<string, string>> = {
  "api.stripe.com": "stripe",
  "api.twilio.com": "twilio",
  "api.resend.com": "resend",
};

const VENDOR_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const HOST_NAME = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;

/** More hosts for vendors: a host to a vendor name, or to null to leave the host alone. */
export type VendorHosts = Readonly<Record<string, string | null>>;

export class Routes {
  /** `gateway` is the gateway's root URL without a trailing slash. */
  private constructor(
    readonly gateway: string,
    readonly key: string,
    private readonly vendors: ReadonlyMap<string, string>,
  ) {}

  /** The default vendor hosts with `vendors` over them; throws on a malformed key, URL or host. */
  static build(key: string, baseUrl: string, vendors: VendorHosts = {}): Routes {
    if (typeof key !== "string" || key === "" || !/^[\x21-\x7e]+$/.test(key)) {
      throw new TypeError("key must be the Outlay key (olk_…)");
    }
    const hosts = new Map(Object.entries(DEFAULT_VENDOR_HOSTS));
    for (const [host, vendor] of Object.entries(vendors)) {
      const name = host.trim().toLowerCase();
      if (!HOST_NAME.test(name)) {
        throw new TypeError(`vendors: ${JSON.stringify(host)} is not a host name (no scheme, port `
          + "or path), like 'api.stripe.com'");
      }
      if (vendor === null) {
        hosts.delete(name);
      } else if (typeof vendor === "string" && VENDOR_NAME.test(vendor)) {
        hosts.set(name, vendor);
      } else {
        throw new TypeError(`vendors: ${JSON.stringify(vendor)} is not a vendor name, like 'stripe'`);
      }
    }
    return new Routes(gatewayUrl(baseUrl), key, hosts);
  }

  /** The base URL that `openai` clients are given: the gateway serves OpenAI's routes under /v1. */
  get openaiBaseUrl(): string {
    return `${this.gateway}/v1`;
  }

  /** The base URL that `@anthropic-ai/sdk` clients are given: that SDK adds /v1/messages. */
  get anthropicBaseUrl(): string {
    return this.gateway;
  }

  /**
   * The gateway URL standing in for `url`, or null when `url` is left alone: a provider's host
   * goes to the gateway's root, a vendor's to /vendors/<vendor>/, and the gateway's own LLM
   * routes stay where they are (for the credential: a client may have been given another).
   * Path and query stay as the caller encoded them: the gateway forwards them as sent.
   */
  target(url: string): string | null {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return null;
    }
    if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
      return null;
    }
    const rest = `${parsed.pathname}${parsed.search}`;
    if (LLM_HOSTS.includes(parsed.hostname)) {
      return `${this.gateway}${rest}`;
    }
    const vendor = this.vendors.get(parsed.hostname);
    if (vendor !== undefined) {
      return `${this.gateway}/vendors/${vendor}${rest}`;
    }
    const llmRoutes = `${this.gateway}/v1/`;
    return parsed.href.startsWith(llmRoutes) ? parsed.href : null;
  }

  /**
   * The Outlay key where the caller put its credential. The gateway reads a bearer token, an
   * `x-api-key` or a basic-auth password on every route, so basic auth stays basic (Twilio
   * keeps its account SID as the user name) and anything else is bearer.
   */
  putCredentials(headers: Headers): void {
    headers.set("Authorization", this.authorization(headers.get("Authorization")));
    if (headers.has("x-api-key")) {
      headers.set("x-api-key", this.key);
    }
  }

  private authorization(current: string | null): string {
    const [scheme = "", value = ""] = (current ?? "").split(/ (.*)/s);
    if (scheme.toLowerCase() === "basic") {
      const user = basicUser(value.trim());
      return `Basic ${Buffer.from(`${user}:${this.key}`, "utf8").toString("base64")}`;
    }
    return `Bearer ${this.key}`;
  }
}

/** The user name of a basic-auth value, or "" when the value is not base64 of UTF-8. */
function basicUser(value: string): string {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0) {
    return "";
  }
  const decoded = Buffer.from(value, "base64");
  let pair: string;
  try {
    pair = new TextDecoder("utf-8", { fatal: true }).decode(decoded);
  } catch {
    return "";
  }
  const colon = pair.indexOf(":");
  return colon < 0 ? pair : pair.slice(0, colon);
}

function gatewayUrl(baseUrl: string): string {
  const trimmed = typeof baseUrl === "string" ? baseUrl.trim().replace(/\/+$/, "") : "";
  let parsed: URL | null = null;
  try {
    parsed = new URL(trimmed);
  } catch {
    parsed = null;
  }
  if (parsed === null || (parsed.protocol !== "http:" && parsed.protocol !== "https:")
      || parsed.hostname === "" || parsed.search !== "" || parsed.hash !== ""
      || parsed.username !== "" || parsed.password !== "") {
    throw new TypeError(`baseUrl must be the gateway's root URL, like ${DEFAULT_GATEWAY}; got `
      + JSON.stringify(baseUrl));
  }
  // the URL as the URL parser writes it, so that target() can compare it with parsed URLs
  return parsed.href.replace(/\/+$/, "");
}
