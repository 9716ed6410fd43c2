// Type-level checks of the public declarations, compiled (not run) by `npm test`: what an agent
// written in TypeScript reads off the package must type-check, and misuse must not.
import OpenAI from "openai";
import {
  BudgetExceeded, errorFrom, errorFromResponse, Outlay, type OutlayError, RateLimited, withRetry,
} from "outlay";

const ol = new Outlay({ key: "olk_x", baseUrl: "http://127.0.0.1:8800", vendors: { "api.acme.example": "acme", "api.resend.com": null } });
ol.interceptAll();
const openai = new OpenAI();

export async function agent(): Promise<string | null> {
  try {
    const completion = await withRetry(
      () => openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
      { attempts: 3, maxWaitS: 30 },
    );
    return completion.choices[0]?.message.content ?? null; // withRetry keeps the call's type
  } catch (error) {
    if (error instanceof BudgetExceeded) {
      const spent: string | null = error.spentUsd; // narrowed by instanceof
      const resets: Date | null = error.resetsAt;
      return `${spent} ${resets?.toISOString()} ${error.capUsd}`;
    }
    if (error instanceof RateLimited) {
      const seconds: number | null = error.retryAfter;
      return String(seconds);
    }
    const typed: OutlayError | null = errorFrom(error);
    return typed?.code ?? null;
  } finally {
    ol.restore();
  }
}

export async function vendor(): Promise<string | undefined> {
  const refusal = await errorFromResponse(await fetch("https://api.stripe.com/v1/balance"));
  return refusal?.requestId ?? undefined;
}

// @ts-expect-error the key is required
new Outlay({ baseUrl: "http://127.0.0.1:8800" });
// @ts-expect-error a vendor is a name or null
new Outlay({ key: "olk_x", vendors: { "api.acme.example": 3 } });
// @ts-expect-error attempts is a number
void withRetry(() => 1, { attempts: "3" });
