// The ES module declarations (dist/esm) type-check as the CommonJS ones do (tests/types.ts).
import { BudgetExceeded, Outlay, withRetry } from "outlay";

const ol = new Outlay({ key: "olk_x" });
ol.interceptAll();
export const spent: Promise<string | null> = withRetry(async () => 1).then(
  () => null,
  (error: unknown) => (error instanceof BudgetExceeded ? error.spentUsd : null),
);
ol.restore();
