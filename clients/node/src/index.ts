/**
 * Outlay's SDK for Node.js agents (docs/contract.md §6.1): route the official `openai` and
 * `@anthropic-ai/sdk` clients and vendor fetch calls through the gateway, typed errors for its
 * refusals, and a retry helper that honours Retry-After.
 */

export {
  budgetOf,
  type BudgetLeft,
  errorFrom,
  errorFromAnswer,
  errorFromResponse,
  type HeadersLike,
} from "./answers.js";
export {
  AccountNotAllowed,
  ApprovalRequired,
  BudgetExceeded,
  DestinationNotAllowed,
  InvalidKey,
  InvalidRequest,
  KeyExpired,
  KeyRevoked,
  ModelNotAllowed,
  MoneyOutNotCapped,
  NotAllowed,
  OperationNotAllowed,
  OutlayError,
  type OutlayErrorOptions,
  RateLimited,
  Unavailable,
  VendorNotAllowed,
} from "./errors.js";
export { Outlay, type OutlayOptions } from "./outlay.js";
export { withRetry, type RetryOptions } from "./retry.js";
export type { VendorHosts } from "./routes.js";
