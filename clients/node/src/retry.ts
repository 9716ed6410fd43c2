/**
 * Retrying a call that was rate limited, after the wait the gateway names, or that met a
 * server error, after a back-off. Nothing else is retried, a 402 least of all: a budget does
 * not free up by asking again, nor does a refused key or a forbidden model.
 */

import { errorFrom, header, type HeadersLike } from "./answers.js";
import { RateLimited } from "./errors.js";
import { parseRetryAfter } from "./retryAfter.js";

export const DEFAULT_ATTEMPTS = 3;
export const DEFAULT_MAX_WAIT_S = 60;
const BACKOFF_BASE_S = 0.5;

export interface RetryOptions {
  /** Tries in all, the first included (3). */
  attempts?: number;
  /** The longest wait taken before a retry, in seconds (60); a longer one throws at once. */
  maxWaitS?: number;
  /** How to wait (setTimeout); tests pass their own. */
  sleep?: (seconds: number) => Promise<unknown>;
  /** Where the jitter comes from (Math.random). */
  random?: () => number;
}

/**
 * `await fn()`, tried up to `attempts` times in all while it is rate limited or meets a 5xx.
 *
 * A rate-limit refusal (an Outlay `RateLimited`, or any SDK's 429 without a foreign code) is
 * retried after its `Retry-After`; without one, and for a 5xx without one, after an
 * exponential back-off with full jitter. A wait longer than `maxWaitS` is not taken: the error
 * is thrown at once, since an earlier retry would only be refused again. Every other error,
 * and the last one, is thrown as it came.
 */
export async function withRetry<T>(fn: () => T | PromiseLike<T>, options: RetryOptions = {}): Promise<T> {
  const attempts = options.attempts ?? DEFAULT_ATTEMPTS;
  const maxWaitS = options.maxWaitS ?? DEFAULT_MAX_WAIT_S;
  const sleep = options.sleep ?? wait;
  const random = options.random ?? Math.random;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new RangeError("attempts must be a whole number, at least 1");
  }
  if (!(maxWaitS >= 0)) {
    throw new RangeError("maxWaitS must not be negative");
  }
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await fn();
    } catch (error) {
      const seconds = waitBeforeRetry(error, attempt, attempts, maxWaitS, random);
      if (seconds === null) {
        throw error;
      }
      await sleep(seconds);
    }
  }
}

/** Seconds to wait before attempt `attempt + 1`, or null to throw `error` now. */
export function waitBeforeRetry(
  error: unknown,
  attempt: number,
  attempts: number,
  maxWaitS: number,
  random: () => number = Math.random,
): number | null {
  if (attempt >= attempts) {
    return null;
  }
  const refusal = errorFrom(error);
  let retryAfter: number | null;
  if (refusal instanceof RateLimited) {
    if (refusal.code === "loop_detected") {
      return null; // the same request made over and over: repeating it is the loop
    }
    retryAfter = refusal.retryAfter;
  } else if (isServerError(error)) {
    // Outlay's own 5xx (Unavailable) and an upstream's passed through alike
    retryAfter = parseRetryAfter(header(headersOf(error), "Retry-After"), Date.now());
  } else {
    return null;
  }
  if (retryAfter === null) {
    // no one said when: spread the retries of many agents instead of aligning them
    return random() * Math.min(maxWaitS, BACKOFF_BASE_S * 2 ** (attempt - 1));
  }
  return retryAfter > maxWaitS ? null : retryAfter;
}

function isServerError(error: unknown): boolean {
  if (typeof error !== "object" || error === null) {
    return false;
  }
  const shape = error as { status?: unknown; statusCode?: unknown };
  const status = shape.status ?? shape.statusCode;
  return typeof status === "number" && status >= 500 && status <= 599;
}

function headersOf(error: unknown): HeadersLike | null {
  const headers = (error as { headers?: unknown }).headers;
  return typeof headers === "object" && headers !== null ? (headers as HeadersLike) : null;
}

function wait(seconds: number): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, seconds * 1000);
  });
}
