/**
 * Reading a refusal off an HTTP answer, or off whatever the agent's code holds after the fact:
 * an SDK's error, a fetch Response, for code that does not intercept.
 */

import { BY_CODE, BY_STATUS, OutlayError, text } from "./errors.js";
import { parseRetryAfter } from "./retryAfter.js";

export const REQUEST_ID_HEADER = "X-Outlay-Request-Id";
/** Fields of an error object that are its envelope; everything else is the refusal's details. */
const ENVELOPE = new Set(["message", "type", "code", "param"]);

/** Headers as fetch gives them, or as a plain object (stripe-node, axios). */
export type HeadersLike =
  | { get(name: string): string | null }
  | Readonly<Record<string, string | readonly string[] | undefined>>;

/**
 * The typed error for an HTTP answer, or null when it is not one of §4.3's refusals.
 *
 * `body` is the parsed JSON (the whole body, or only its `error` object as the openai SDK
 * keeps it), or its text.
 */
export function errorFromAnswer(
  status: number,
  headers: HeadersLike | null | undefined,
  body: unknown,
  nowMs: number = Date.now(),
): OutlayError | null {
  if (!Number.isInteger(status) || status < 400) {
    return null;
  }
  const error = errorObject(body);
  let cls: typeof OutlayError | undefined;
  let code: string | null;
  if (error["code"] === undefined || error["code"] === null) {
    cls = BY_STATUS.get(status);
    code = cls ? cls.code : null;
  } else {
    // a code Outlay does not give is someone else's: Stripe's 402 card_declined is no budget
    code = text(error["code"]);
    cls = code === null ? undefined : BY_CODE.get(code);
  }
  if (cls === undefined || code === null) {
    return null;
  }
  const details: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(error)) {
    if (!ENVELOPE.has(name)) {
      details[name] = value;
    }
  }
  const retryAfter = parseRetryAfter(header(headers, "Retry-After"), nowMs);
  if (retryAfter !== null) {
    details["retry_after"] = retryAfter;
  }
  const message = text(error["message"]) ?? `The Outlay gateway refused the call (${status}).`;
  return new cls(message, { status, code, details, requestId: header(headers, REQUEST_ID_HEADER) });
}

/**
 * The typed Outlay error behind an error or an answer the agent's code holds, or null.
 *
 * Takes an `openai` or `@anthropic-ai/sdk` status error, a stripe-node `StripeError`, a
 * twilio `RestException`, resend's error object, or a plain `{status, headers, body}`. Errors
 * that keep only the status give a 402 as BudgetExceeded and a 429 as RateLimited, without
 * their details. A fetch Response's body can only be read asynchronously:
 * use `errorFromResponse` for it.
 */
export function errorFrom(thing: unknown): OutlayError | null {
  if (thing instanceof OutlayError) {
    return thing;
  }
  if (typeof thing !== "object" || thing === null || thing instanceof Response) {
    return null;
  }
  const shape = thing as Record<string, unknown>;
  const status = shape["status"] ?? shape["statusCode"];
  if (typeof status !== "number") {
    return null;
  }
  // openai and anthropic keep the parsed body as `error`, stripe-node keeps it as `raw`;
  // twilio-node keeps its `code` and `details`, resend-node's error its `name`
  const body = shape["error"] ?? shape["raw"] ?? shape["body"] ?? keptFields(shape);
  return errorFromAnswer(status, headersOf(shape["headers"]), body);
}

const TWILIO_PREFIX = /^(\[HTTP \d+\] )?Unable to \w+ record: /;

/** The refusal's code and details as kept on the error itself, when its code is one of the
 * gateway's (a vendor's own code, Twilio's numbers among them: typed by status alone). */
function keptFields(shape: Record<string, unknown>): Record<string, unknown> | undefined {
  const code = [shape["code"], shape["name"]].find((c) => typeof c === "string" && BY_CODE.has(c));
  if (code === undefined) {
    return undefined;
  }
  const details = isRecord(shape["details"]) ? shape["details"] : {};
  // twilio-node's message is "[HTTP 403] Unable to create record: " and the gateway's
  const message = typeof shape["message"] === "string" ? shape["message"].replace(TWILIO_PREFIX, "") : "";
  return { ...details, code, message };
}

/** The typed Outlay error a fetch Response carries, or null; the body is read from a clone. */
export async function errorFromResponse(response: Response): Promise<OutlayError | null> {
  if (response.status < 400) {
    return null;
  }
  let body: string | null;
  try {
    body = await response.clone().text();
  } catch {
    body = null; // a body already read or broken: the status and headers still tell
  }
  return errorFromAnswer(response.status, response.headers, body);
}

function errorObject(body: unknown): Record<string, unknown> {
  let parsed = body;
  if (typeof parsed === "string") {
    try {
      parsed = JSON.parse(parsed);
    } catch {
      return {};
    }
  }
  if (!isRecord(parsed)) {
    return {};
  }
  const inner = parsed["error"];
  if (isRecord(inner)) {
    return inner;
  }
  return "code" in parsed || "message" in parsed ? parsed : {};
}

function headersOf(value: unknown): HeadersLike | null {
  if (typeof value !== "object" || value === null) {
    return null;
  }
  return value as HeadersLike;
}

export function header(headers: HeadersLike | null | undefined, name: string): string | null {
  if (headers === null || headers === undefined) {
    return null;
  }
  if (typeof headers.get === "function") {
    const value: unknown = (headers as { get(name: string): unknown }).get(name);
    return typeof value === "string" ? value : null;
  }
  const wanted = name.toLowerCase();
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === wanted) {
      const first: unknown = Array.isArray(value) ? value[0] : value;
      return typeof first === "string" ? first : null;
    }
  }
  return null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** What an allowed answer says of the tightest hard budget that applied to the call. */
export interface BudgetLeft {
  /** What is left once this call's most is held, in USD (an exact decimal string). */
  readonly remainingUsd: string;
  /** The budget's scope, e.g. `tag:customer=acme`; null when the answer does not say. */
  readonly scope: string | null;
}

/**
 * The budget an allowed answer reports (`X-Outlay-Budget-Remaining-Usd`,
 * `X-Outlay-Budget-Scope`), read off a fetch Response, an openai SDK's `withResponse()`
 * result (`{data, response}`) or headers; null when no hard budget applied.
 */
export function budgetOf(thing: unknown): BudgetLeft | null {
  const holder = isRecord(thing) && isRecord(thing.response) ? thing.response : thing;
  const headers = isRecord(holder) && "headers" in holder
    ? headersOf(holder.headers) : headersOf(holder);
  const remaining = header(headers, "X-Outlay-Budget-Remaining-Usd");
  if (remaining === null || !/^\d+(\.\d+)?$/.test(remaining)) {
    return null;
  }
  return { remainingUsd: remaining, scope: header(headers, "X-Outlay-Budget-Scope") };
}
