/**
 * The refusals an agent can get from the gateway, as typed errors: the same tree as the Python
 * SDK's (docs/contract.md §6), mapped once from the error table of §4.3.
 *
 * OutlayError                 status, code, message, details, requestId, scope
 * ├── InvalidKey              401 invalid_api_key (and the base of every 401)
 * │   └── KeyRevoked          401 key_revoked
 * │       └── KeyExpired      401 key_expired                       expiredAt
 * ├── NotAllowed              403 (the base of the allow-lists')    allowed, vendor
 * │   ├── ModelNotAllowed     403 model_not_allowed
 * │   ├── VendorNotAllowed    403 vendor_not_allowed
 * │   ├── OperationNotAllowed 403 operation_not_allowed             method, path
 * │   ├── AccountNotAllowed   403 account_not_allowed               account
 * │   └── DestinationNotAllowed 403 destination_not_allowed         destination
 * ├── MoneyOutNotCapped       403 money_out_not_capped              vendor
 * │                           (itself: 403 approval_mismatch)       details: approvalId, …
 * ├── ApprovalRequired        403 approval_required                 approvalId
 * ├── BudgetExceeded          402 budget_exceeded                   period, spentUsd, capUsd,
 * │                                                                 resetsAt
 * ├── RateLimited             429 rate_limit_exceeded | hourly_… | daily_… | token_… |
 * │                               concurrency_limit_exceeded |      retryAfter, limit
 * │                               provider_rate_limited
 * │                               loop_detected (never retried)
 * │                               too_many_tag_values
 * ├── InvalidRequest          400 invalid_request | price_unknown | missing_tag;
 * │                           413 request_too_large; 408 request_timeout
 * └── Unavailable             502 / 503 upstream_unavailable | enforcement_unavailable
 *
 * An expired key is a KeyRevoked: both mean the key will never work again, so one check stops
 * an agent on either. An intercepted SDK client throws one object that is both its own status
 * error and one of these (see joined.ts); `instanceof` answers for both.
 */

/** The Outlay class an SDK error was joined with (joined.ts); read by `instanceof`. */
export const JOINED_CLASS: unique symbol = Symbol("outlay.joinedClass");

export interface OutlayErrorOptions {
  status?: number;
  code?: string;
  details?: Readonly<Record<string, unknown>>;
  requestId?: string | null;
}

type AnyClass<T> = abstract new (...args: never[]) => T;

export class OutlayError extends Error {
  static readonly status: number = 500;
  static readonly code: string = "outlay_error";

  /** The HTTP status of the refusal. */
  readonly status: number;
  /** The machine code of the error body (docs/contract.md §4.3). */
  readonly code: string;
  /** The error object's fields other than its envelope (`message`, `type`, `code`, `param`). */
  readonly details: Readonly<Record<string, unknown>>;
  /** The refusal's `X-Outlay-Request-Id`, also its audit entry's `request_id`. */
  readonly requestId: string | null;

  constructor(message: string, options: OutlayErrorOptions = {}) {
    super(message);
    const cls = new.target as unknown as typeof OutlayError;
    this.name = cls.name;
    this.status = options.status ?? cls.status;
    this.code = options.code ?? cls.code;
    this.details = Object.freeze({ ...options.details });
    this.requestId = options.requestId ?? null;
  }

  /** The scope whose policy refused the call (`key:…`, `agent:…`, …), when given. */
  get scope(): string | null {
    return text(this.details["scope"]);
  }

  /**
   * True for this class's own instances and for SDK errors joined with it (or a subclass), so
   * that `err instanceof BudgetExceeded` holds for what an intercepted openai client throws.
   */
  static override [Symbol.hasInstance]<T>(this: AnyClass<T>, value: unknown): value is T {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) {
      return true;
    }
    if (typeof value !== "object" || value === null) {
      return false;
    }
    const joined: unknown = (value as { [JOINED_CLASS]?: unknown })[JOINED_CLASS];
    return typeof joined === "function"
      && (joined === this || Object.prototype.isPrototypeOf.call(this.prototype, joined.prototype));
  }
}

/** 401: no key, or one the gateway does not know. */
export class InvalidKey extends OutlayError {
  static override readonly status: number = 401;
  static override readonly code: string = "invalid_api_key";
}

/** 401: the key was revoked; it will never work again. */
export class KeyRevoked extends InvalidKey {
  static override readonly code: string = "key_revoked";
}

/** 401: the key's TTL has run out. */
export class KeyExpired extends KeyRevoked {
  static override readonly code: string = "key_expired";

  get expiredAt(): Date | null {
    return instant(this.details["expired_at"]);
  }
}

/** 403: the call is outside an allow-list of a policy in force; retrying does not help. */
export class NotAllowed extends OutlayError {
  static override readonly status: number = 403;
  static override readonly code: string = "not_allowed";

  /** What the allow-list allows (empty when no policy lists any). */
  get allowed(): string[] {
    return names(this.details["allowed"]);
  }

  get vendor(): string | null {
    return text(this.details["vendor"]);
  }
}

/** 403: the model is outside the allow-list, or not free under `free_models_only`. */
export class ModelNotAllowed extends NotAllowed {
  static override readonly code: string = "model_not_allowed";
}

/** 403: the vendor is outside the allow-list. */
export class VendorNotAllowed extends NotAllowed {
  static override readonly code: string = "vendor_not_allowed";
}

/** 403: the vendor call (`method`, `path`) is outside the scope's `operations`. */
export class OperationNotAllowed extends NotAllowed {
  static override readonly code: string = "operation_not_allowed";

  get method(): string | null {
    return text(this.details["method"]);
  }

  get path(): string | null {
    return text(this.details["path"]);
  }
}

/** 403: the connected account the call acts on is one no policy in force allows. */
export class AccountNotAllowed extends NotAllowed {
  static override readonly code: string = "account_not_allowed";

  get account(): string | null {
    return text(this.details["account"]);
  }
}

/** 403: the country or recipient the call sends to is outside the scope's `destinations`. */
export class DestinationNotAllowed extends NotAllowed {
  static override readonly code: string = "destination_not_allowed";

  get destination(): string | null {
    return text(this.details["destination"]);
  }
}

/**
 * 403: a refund, transfer or payout under a hard spend budget, with no money-out budget on
 * any scope of the call: Outlay moves no money out uncapped. Retrying does not help.
 */
export class MoneyOutNotCapped extends OutlayError {
  static override readonly status: number = 403;
  static override readonly code: string = "money_out_not_capped";

  get vendor(): string | null {
    return text(this.details["vendor"]);
  }
}

/**
 * 403: a human must approve the call; retry with `X-Outlay-Approval: <approvalId>` once
 * approved.
 */
export class ApprovalRequired extends OutlayError {
  static override readonly status: number = 403;
  static override readonly code: string = "approval_required";

  get approvalId(): string | null {
    return text(this.details["approval_id"]);
  }
}

/** 402: a hard budget has no room for the call. Retrying does not help before `resetsAt`. */
export class BudgetExceeded extends OutlayError {
  static override readonly status: number = 402;
  static override readonly code: string = "budget_exceeded";

  get period(): string | null {
    return text(this.details["period"]);
  }

  /** USD spent in the period, as the exact decimal string the gateway sent ("0.25"). */
  get spentUsd(): string | null {
    return money(this.details["spent_usd"]);
  }

  /** The budget's cap in USD, an exact decimal string. */
  get capUsd(): string | null {
    return money(this.details["cap_usd"]);
  }

  /** When the period starts again; null for a `total` budget. */
  get resetsAt(): Date | null {
    return instant(this.details["resets_at"]);
  }
}

/** 429: a rate, token or concurrency limit is full for now. */
export class RateLimited extends OutlayError {
  static override readonly status: number = 429;
  static override readonly code: string = "rate_limit_exceeded";

  /** Seconds until a retry can pass: the `Retry-After` header, else the body's. */
  get retryAfter(): number | null {
    const value = this.details["retry_after"];
    const seconds = typeof value === "number" ? value
      : typeof value === "string" && /^[0-9]+(\.[0-9]+)?$/.test(value) ? Number(value)
      : Number.NaN;
    return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
  }

  get limit(): number | null {
    const value = this.details["limit"];
    return Number.isSafeInteger(value) ? (value as number) : null;
  }
}

/**
 * 400, 408 or 413: the request itself was refused (malformed, too large, too slow to arrive,
 * without a tag a policy requires: code `missing_tag`, or an unpriced model under a hard
 * budget: code `price_unknown`).
 */
export class InvalidRequest extends OutlayError {
  static override readonly status: number = 400;
  static override readonly code: string = "invalid_request";
}

/** 502 or 503: no upstream answered, or the gateway cannot reach its state store. */
export class Unavailable extends OutlayError {
  static override readonly status: number = 503;
  static override readonly code: string = "upstream_unavailable";
}

export const BY_CODE: ReadonlyMap<string, typeof OutlayError> = new Map<string, typeof OutlayError>([
  ["invalid_api_key", InvalidKey],
  ["key_revoked", KeyRevoked],
  ["key_expired", KeyExpired],
  ["model_not_allowed", ModelNotAllowed],
  ["vendor_not_allowed", VendorNotAllowed],
  ["operation_not_allowed", OperationNotAllowed],
  ["account_not_allowed", AccountNotAllowed],
  ["destination_not_allowed", DestinationNotAllowed],
  ["money_out_not_capped", MoneyOutNotCapped],
  ["approval_required", ApprovalRequired],
  ["approval_mismatch", OutlayError], // the approval presented is not for this call
  ["budget_exceeded", BudgetExceeded],
  ["rate_limit_exceeded", RateLimited],
  ["hourly_rate_limit_exceeded", RateLimited],
  ["daily_rate_limit_exceeded", RateLimited],
  ["token_rate_limit_exceeded", RateLimited],
  ["concurrency_limit_exceeded", RateLimited],
  ["loop_detected", RateLimited], // the same request made over and over (loop_guard)
  ["provider_rate_limited", RateLimited],
  ["too_many_tag_values", RateLimited], // a new value of a tag past its `*` policy's max_values
  ["invalid_request", InvalidRequest],
  ["price_unknown", InvalidRequest],
  ["missing_tag", InvalidRequest], // a tag a policy's required_tags names
  ["request_too_large", InvalidRequest],
  ["request_timeout", InvalidRequest], // the body did not arrive in time
  ["upstream_unavailable", Unavailable],
  ["enforcement_unavailable", Unavailable],
]);
// §4.3 gives these statuses one meaning each, so they are typed when the answer names no code
// at all (a vendor SDK that keeps only the status, a proxy's error page).
export const BY_STATUS: ReadonlyMap<number, typeof OutlayError> = new Map<number, typeof OutlayError>([
  [402, BudgetExceeded],
  [429, RateLimited],
]);

export function text(value: unknown): string | null {
  return typeof value === "string" && value !== "" ? value : null;
}

function names(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

const DECIMAL = /^-?[0-9]+(\.[0-9]+)?$/;

/** USD amounts are decimal strings in the body; kept as such, never turned into a float. */
function money(value: unknown): string | null {
  const written = typeof value === "number" && Number.isFinite(value) ? String(value) : value;
  return typeof written === "string" && DECIMAL.test(written) ? written : null;
}

const ISO_INSTANT = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})?$/;

function instant(value: unknown): Date | null {
  if (typeof value !== "string" || !ISO_INSTANT.test(value)) {
    return null;
  }
  // an instant without a zone is UTC, as the gateway writes them (docs/contract.md §1.2)
  const zoned = /(Z|[+-][0-9]{2}:[0-9]{2})$/.test(value) ? value : `${value}Z`;
  const when = new Date(zoned);
  return Number.isNaN(when.getTime()) ? null : when;
}
