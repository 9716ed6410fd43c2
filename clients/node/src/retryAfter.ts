/**
 * `Retry-After` read strictly (RFC 9110 §10.2.3), as the Python SDK reads it: delay-seconds in
 * ASCII digits, or an HTTP-date in one of its three forms. Anything else is no answer at all
 * and the caller's own back-off applies; nothing a peer sends can make it throw. Pure: the
 * caller gives the time.
 *
 * `Number()` and `Date.parse()` are not used: they take "1e3", " 0x10 ", "Infinity" and dates
 * in any form an engine likes, none of which is a Retry-After.
 */

/** More digits than this is "a very long time" already (over 300 years): not converted. */
export const MAX_DIGITS = 10;
export const LONGEST_S = 10 ** MAX_DIGITS - 1;

const DIGITS = /^[0-9]+$/;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)";
const LONG_DAY = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)";
const MONTH = `(${MONTHS.join("|")})`;
const TIME = "([0-9]{2}):([0-9]{2}):([0-9]{2})";
// Sun, 06 Nov 1994 08:49:37 GMT
const IMF_FIXDATE = new RegExp(`^${DAY}, ([0-9]{2}) ${MONTH} ([0-9]{4}) ${TIME} GMT$`);
// Sunday, 06-Nov-94 08:49:37 GMT
const RFC850_DATE = new RegExp(`^${LONG_DAY}, ([0-9]{2})-${MONTH}-([0-9]{2}) ${TIME} GMT$`);
// Sun Nov  6 08:49:37 1994
const ASCTIME_DATE = new RegExp(`^${DAY} ${MONTH} ([0-9 ][0-9]) ${TIME} ([0-9]{4})$`);

/**
 * Seconds from `nowMs` (Unix time in milliseconds) that `value` asks to wait, or null if it
 * is unusable. A date in the past is 0; a longer delay than LONGEST_S is LONGEST_S, for the
 * caller to bound further.
 */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | null {
  if (typeof value !== "string") {
    return null;
  }
  const text = value.replace(/^[ \t]+|[ \t]+$/g, ""); // optional whitespace around a field value
  if (DIGITS.test(text)) {
    const digits = text.replace(/^0+/, "");
    return digits.length > MAX_DIGITS ? LONGEST_S : Number(digits || "0");
  }
  const moment = httpDate(text, nowMs);
  if (moment === null) {
    return null;
  }
  return Math.min(Math.max(0, (moment - nowMs) / 1000), LONGEST_S);
}

/** The instant (Unix milliseconds) an HTTP-date names, or null if `text` is none. */
function httpDate(text: string, nowMs: number): number | null {
  let found = IMF_FIXDATE.exec(text);
  if (found) {
    return instant(Number(found[3]), found[2], Number(found[1]), found.slice(4, 7));
  }
  found = RFC850_DATE.exec(text);
  if (found) {
    return instant(twoDigitYear(Number(found[3]), nowMs), found[2], Number(found[1]), found.slice(4, 7));
  }
  found = ASCTIME_DATE.exec(text);
  if (found) {
    return instant(Number(found[6]), found[1], Number(found[2]), found.slice(3, 6));
  }
  return null;
}

function instant(year: number, month: string | undefined, day: number, time: string[]): number | null {
  const [hours, minutes, seconds] = time.map(Number);
  const monthIndex = MONTHS.indexOf(month ?? "");
  if (hours === undefined || minutes === undefined || seconds === undefined || monthIndex < 0) {
    return null;
  }
  // a leap second (60) is allowed by the grammar and means the next second
  if (hours > 23 || minutes > 59 || seconds > 60) {
    return null;
  }
  const date = new Date(Date.UTC(year, monthIndex, day, hours, minutes, seconds));
  date.setUTCFullYear(year); // Date.UTC reads years 0-99 as 1900-1999
  // 31 Feb is no date; Date.UTC would roll it into March
  if (date.getUTCMonth() !== monthIndex || date.getUTCDate() !== day) {
    return null;
  }
  return date.getTime();
}

/** RFC 9110: a two-digit year more than 50 years in the future is in the past century. */
function twoDigitYear(yy: number, nowMs: number): number {
  const thisYear = new Date(nowMs).getUTCFullYear();
  const year = Math.floor(thisYear / 100) * 100 + yy;
  return year > thisYear + 50 ? year - 100 : year;
}
