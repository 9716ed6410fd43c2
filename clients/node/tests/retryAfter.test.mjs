// Retry-After read strictly: delay-seconds in ASCII digits or an HTTP-date, nothing else.
import assert from "node:assert/strict";
import { test } from "node:test";

import { LONGEST_S, parseRetryAfter } from "../dist/esm/retryAfter.js";

const NOW = Date.UTC(1994, 10, 6, 8, 49, 7); // ten seconds before the RFC's example date

test("delay-seconds, with optional whitespace and leading zeros", () => {
  for (const [value, seconds] of [["0", 0], ["5", 5], [" \t7\t ", 7], ["0042", 42], ["000", 0]]) {
    assert.equal(parseRetryAfter(value, NOW), seconds, value);
  }
});

test("very long delays are capped without being converted", () => {
  assert.equal(parseRetryAfter("9".repeat(10), NOW), LONGEST_S);
  assert.equal(parseRetryAfter("1".repeat(100_000), NOW), LONGEST_S);
});

test("the three HTTP-date forms are seconds from now, and a past date is 0", () => {
  for (const date of ["Sun, 06 Nov 1994 08:49:17 GMT", "Sunday, 06-Nov-94 08:49:17 GMT", "Sun Nov  6 08:49:17 1994"]) {
    assert.equal(parseRetryAfter(date, NOW), 10, date);
  }
  assert.equal(parseRetryAfter("Sun, 06 Nov 1994 08:00:00 GMT", NOW), 0);
});

test("anything else is no answer", () => {
  for (const value of [undefined, null, "", " ", "-1", "+5", "1.5", "1e3", "0x10", "NaN", "Infinity",
    "²", "٣", "５", "soon", "5 s", "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 31 Feb 1994 08:49:37 GMT",
    "Sun, 06 Nov 1994 24:00:00 GMT", "2026-01-01T00:00:00Z", "Sun, 6 Nov 1994 08:49:37 GMT"]) {
    assert.equal(parseRetryAfter(value, NOW), null, String(value));
  }
});
