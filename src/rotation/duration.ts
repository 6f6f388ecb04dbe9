/**
 * ISO-8601 durations as Key Vault rotation policies use them (`P18M`, `P2Y`, `P30D`, `P1Y10D`, `PT48H`, `P2W`).
 *
 * Arithmetic is calendar arithmetic in UTC, never a 30-day-month approximation:
 * - years and months are added first, as one month count (so `P1Y` and `P12M` land on the same instant),
 *   keeping the day of month and clamping it to the target month's last day (Jan 31 + P1M = Feb 28/29);
 * - then weeks (7 days) and days, each exactly 24 hours (UTC has no DST);
 * - then hours, minutes and seconds.
 *
 * Comparing a calendar duration with a number of days depends on the start date (P1M is 28 to 31 days), so
 * every comparison helper here is explicit about which bound it uses: `durationBoundsMs` gives the exact
 * shortest and longest span the duration can have over every start date of the 400-year Gregorian cycle,
 * and a rule like ">= 28 days" holds when it holds for every start date (the minimum), e.g. P1M counts as
 * at least 28 days and at most 31.
 */
import { InvalidArgumentError, InvalidDurationError } from '../errors.js';

export interface Duration {
  readonly years: number;
  readonly months: number;
  readonly weeks: number;
  readonly days: number;
  readonly hours: number;
  readonly minutes: number;
  readonly seconds: number;
}

export const ZERO_DURATION: Duration = Object.freeze({
  years: 0,
  months: 0,
  weeks: 0,
  days: 0,
  hours: 0,
  minutes: 0,
  seconds: 0,
});

export const MS_PER_DAY = 86_400_000;
const MS_PER_HOUR = 3_600_000;
const MS_PER_MINUTE = 60_000;
const MS_PER_SECOND = 1_000;

/** Longer inputs are not durations anyone means; the cap keeps parsing trivially bounded. */
const MAX_TEXT_LENGTH = 64;
/** Each component stays far below the Date range (about 273,000 years) so sums never lose precision. */
const MAX_COMPONENT = 999_999_999;

const PATTERN =
  /^P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/;

/**
 * Parses an ISO-8601 duration exactly. Accepted: `PnYnMnWnDTnHnMnS` with any subset of components in that
 * order, non-negative whole numbers, upper-case designators. Rejected: fractions, signs, empty `P`/`PT`,
 * lower case, anything else. `field` names the input in the error (e.g. `attributes.expiryTime`).
 */
export function parseDuration(text: string, field = 'duration'): Duration {
  if (typeof text !== 'string') {
    throw new InvalidDurationError(`${field} must be an ISO-8601 duration string such as P30D`, field);
  }
  if (text.length > MAX_TEXT_LENGTH) {
    throw new InvalidDurationError(`${field} is too long to be an ISO-8601 duration`, field);
  }
  const match = PATTERN.exec(text);
  // `P` alone matches the pattern with no component; `PT` is excluded by the lookahead.
  if (match === null || match.slice(1).every((group) => group === undefined)) {
    throw new InvalidDurationError(
      `${field} is not an ISO-8601 duration (${JSON.stringify(text)}); expected e.g. P90D, P18M, P2Y, P1Y10D, PT48H, P2W`,
      field,
    );
  }
  const [years, months, weeks, days, hours, minutes, seconds] = match.slice(1).map((group) => {
    if (group === undefined) return 0;
    const value = Number(group);
    if (!Number.isSafeInteger(value) || value > MAX_COMPONENT) {
      throw new InvalidDurationError(`${field} has a component larger than ${MAX_COMPONENT}`, field);
    }
    return value;
  }) as [number, number, number, number, number, number, number];
  return Object.freeze({ years, months, weeks, days, hours, minutes, seconds });
}

/** Like `parseDuration` but returns `undefined` instead of throwing. */
export function tryParseDuration(text: string): Duration | undefined {
  try {
    return parseDuration(text);
  } catch {
    return undefined;
  }
}

/** Builds a duration from parts (missing parts are 0), checking each is a whole, non-negative number. */
export function duration(parts: Partial<Duration>): Duration {
  const out: Duration = {
    years: parts.years ?? 0,
    months: parts.months ?? 0,
    weeks: parts.weeks ?? 0,
    days: parts.days ?? 0,
    hours: parts.hours ?? 0,
    minutes: parts.minutes ?? 0,
    seconds: parts.seconds ?? 0,
  };
  for (const [name, value] of Object.entries(out)) {
    if (!Number.isSafeInteger(value) || value < 0 || value > MAX_COMPONENT) {
      throw new InvalidArgumentError(`duration ${name} must be a whole number from 0 to ${MAX_COMPONENT}`);
    }
  }
  return Object.freeze(out);
}

/**
 * Canonical text: components in ISO order, zero components omitted, components kept as given (P12M stays
 * P12M, it is not folded into P1Y). The zero duration is `PT0S`.
 */
export function formatDuration(d: Duration): string {
  let date = '';
  if (d.years) date += `${d.years}Y`;
  if (d.months) date += `${d.months}M`;
  if (d.weeks) date += `${d.weeks}W`;
  if (d.days) date += `${d.days}D`;
  let time = '';
  if (d.hours) time += `${d.hours}H`;
  if (d.minutes) time += `${d.minutes}M`;
  if (d.seconds) time += `${d.seconds}S`;
  if (date === '' && time === '') return 'PT0S';
  return `P${date}${time === '' ? '' : `T${time}`}`;
}

/** Component-wise equality (P1Y and P12M are different durations that add identically). */
export function durationsEqual(a: Duration, b: Duration): boolean {
  return (
    a.years === b.years &&
    a.months === b.months &&
    a.weeks === b.weeks &&
    a.days === b.days &&
    a.hours === b.hours &&
    a.minutes === b.minutes &&
    a.seconds === b.seconds
  );
}

/** Months the calendar part moves a date by (years count as 12 months). */
export function calendarMonths(d: Duration): number {
  return d.years * 12 + d.months;
}

/** The exact part (weeks, days and time) in milliseconds. */
export function fixedMs(d: Duration): number {
  return (
    (d.weeks * 7 + d.days) * MS_PER_DAY +
    d.hours * MS_PER_HOUR +
    d.minutes * MS_PER_MINUTE +
    d.seconds * MS_PER_SECOND
  );
}

/** True when the duration has no year or month part, so it is the same length from every start date. */
export function isFixedLength(d: Duration): boolean {
  return calendarMonths(d) === 0;
}

/** Proleptic Gregorian, like Date. `month` is 1-12. */
function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/*
 * Integer civil-date conversions (days since 1970-01-01 <-> y/m/d, proleptic Gregorian, any year), so the
 * bound scans below run without allocating Dates. The era arithmetic is the well-known public-domain
 * algorithm described by Howard Hinnant ("chrono-compatible low-level date algorithms").
 */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

function civilFromDays(days: number): [year: number, month: number, day: number] {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (month <= 2 ? 1 : 0), month, day];
}

function shiftMonthsMs(ms: number, months: number): number {
  if (months === 0) return ms;
  const dayNumber = Math.floor(ms / MS_PER_DAY);
  const timeOfDay = ms - dayNumber * MS_PER_DAY;
  const [year, month, day] = civilFromDays(dayNumber);
  const total = year * 12 + (month - 1) + months;
  const targetYear = Math.floor(total / 12);
  const targetMonth = total - targetYear * 12 + 1;
  const targetDay = Math.min(day, daysInMonth(targetYear, targetMonth));
  return daysFromCivil(targetYear, targetMonth, targetDay) * MS_PER_DAY + timeOfDay;
}

function toDate(ms: number, what: string): Date {
  const out = new Date(ms);
  if (Number.isNaN(out.getTime())) {
    throw new InvalidArgumentError(`${what} falls outside the range of a JavaScript Date`);
  }
  return out;
}

function checkDate(date: Date, what: string): number {
  const ms = date instanceof Date ? date.getTime() : Number.NaN;
  if (Number.isNaN(ms)) throw new InvalidArgumentError(`${what} must be a valid Date`);
  return ms;
}

/** `date + d` with calendar months (end-of-month clamping), then exact days and time. */
export function addDuration(date: Date, d: Duration): Date {
  const start = checkDate(date, 'the start date');
  return toDate(shiftMonthsMs(start, calendarMonths(d)) + fixedMs(d), 'the date plus the duration');
}

/**
 * `date - d`: calendar months back first (clamped), then exact days and time. Not always the inverse of
 * `addDuration`: Jan 31 + P1M = Feb 28, and Feb 28 - P1M = Jan 28.
 */
export function subtractDuration(date: Date, d: Duration): Date {
  const start = checkDate(date, 'the start date');
  return toDate(shiftMonthsMs(start, -calendarMonths(d)) - fixedMs(d), 'the date minus the duration');
}

export interface SpanBounds {
  /** Shortest span in milliseconds over every start date. */
  readonly minMs: number;
  /** Longest span in milliseconds over every start date. */
  readonly maxMs: number;
}

const gapCache = new Map<string, { min: number; max: number }>();

/**
 * Exact min/max of `(s + laterMonths) - (s + earlierMonths)` in ms over every UTC start date s. A start day
 * of month from 1 to 28 is never clamped, so its span equals the span from the 1st; only days 29-31 differ.
 * Checking days 1, 29, 30, 31 of every month of a full 400-year Gregorian cycle therefore covers every date.
 */
function monthGapBounds(laterMonths: number, earlierMonths: number): { min: number; max: number } {
  const key = `${laterMonths}/${earlierMonths}`;
  const cached = gapCache.get(key);
  if (cached !== undefined) return cached;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  for (let year = 2000; year < 2400; year++) {
    for (let month = 1; month <= 12; month++) {
      const last = daysInMonth(year, month);
      for (const day of [1, 29, 30, 31]) {
        if (day > last) continue;
        const s = daysFromCivil(year, month, day) * MS_PER_DAY;
        const gap = shiftMonthsMs(s, laterMonths) - shiftMonthsMs(s, earlierMonths);
        if (gap < min) min = gap;
        if (gap > max) max = gap;
      }
    }
  }
  const bounds = { min, max };
  // The key space is tiny in practice (a few policies); bound it anyway.
  if (gapCache.size > 1024) gapCache.clear();
  gapCache.set(key, bounds);
  return bounds;
}

/** Shortest and longest span `d` can have, over every start date. */
export function durationBoundsMs(d: Duration): SpanBounds {
  return durationGapBoundsMs(d, ZERO_DURATION);
}

/**
 * Shortest and longest `(s + later) - (s + earlier)` over every start date s: how far apart two offsets
 * from the same instant can be (e.g. a rotation `timeAfterCreate` and the policy `expiryTime`).
 */
export function durationGapBoundsMs(later: Duration, earlier: Duration): SpanBounds {
  const fixed = fixedMs(later) - fixedMs(earlier);
  const months = monthGapBounds(calendarMonths(later), calendarMonths(earlier));
  return { minMs: months.min + fixed, maxMs: months.max + fixed };
}

const remainderCache = new Map<string, { min: number; max: number }>();

/**
 * Shortest and longest `((s + total) - back) - s` over every start date s: where a "time before expiry"
 * lands after creation when expiry is `total` after creation (e.g. rotate `timeBeforeExpiry` against the
 * policy `expiryTime`). Two clamps interact when both have months, so that case scans every day of a
 * 400-year cycle once per pair (memoised).
 */
export function durationRemainderBoundsMs(total: Duration, back: Duration): SpanBounds {
  const backMonths = calendarMonths(back);
  const totalMonths = calendarMonths(total);
  if (backMonths === 0) {
    const bounds = durationBoundsMs(total);
    return { minMs: bounds.minMs - fixedMs(back), maxMs: bounds.maxMs - fixedMs(back) };
  }
  const key = `${totalMonths}/${fixedMs(total)}/${backMonths}`;
  let months = remainderCache.get(key);
  if (months === undefined) {
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    const first = Date.UTC(2000, 0, 1);
    const end = Date.UTC(2400, 0, 1);
    for (let s = first; s < end; s += MS_PER_DAY) {
      const span = shiftMonthsMs(shiftMonthsMs(s, totalMonths) + fixedMs(total), -backMonths) - s;
      if (span < min) min = span;
      if (span > max) max = span;
    }
    months = { min, max };
    if (remainderCache.size > 1024) remainderCache.clear();
    remainderCache.set(key, months);
  }
  return { minMs: months.min - fixedMs(back), maxMs: months.max - fixedMs(back) };
}

/** Shortest length of `d` in days (fractional when it has a time part): P1M is 28, P1Y is 365. */
export function durationMinDays(d: Duration): number {
  return durationBoundsMs(d).minMs / MS_PER_DAY;
}

/** Longest length of `d` in days: P1M is 31, P1Y is 366. */
export function durationMaxDays(d: Duration): number {
  return durationBoundsMs(d).maxMs / MS_PER_DAY;
}

/** True when `d` is at least `days` days from every start date (P1M is at least 28 days, not 29). */
export function isAtLeastDays(d: Duration, days: number): boolean {
  return durationBoundsMs(d).minMs >= days * MS_PER_DAY;
}

/** True when `d` is at most `days` days from every start date (P2Y is at most 731 days, not 730). */
export function isAtMostDays(d: Duration, days: number): boolean {
  return durationBoundsMs(d).maxMs <= days * MS_PER_DAY;
}

/**
 * Orders two durations when the order holds from every start date: -1 if `a` always ends first, 1 if `b`
 * does, 0 if they always end together, `undefined` when it depends on the start (P1M vs P30D).
 */
export function compareDurations(a: Duration, b: Duration): -1 | 0 | 1 | undefined {
  const gap = durationGapBoundsMs(a, b);
  if (gap.minMs === 0 && gap.maxMs === 0) return 0;
  if (gap.maxMs < 0) return -1;
  if (gap.minMs > 0) return 1;
  return undefined;
}
