import test from 'ava';
import fc from 'fast-check';
import { InvalidArgumentError, InvalidDurationError } from '../../src/errors.js';
import {
  addDuration,
  compareDurations,
  type Duration,
  duration,
  durationBoundsMs,
  durationGapBoundsMs,
  durationMaxDays,
  durationMinDays,
  durationRemainderBoundsMs,
  durationsEqual,
  formatDuration,
  isAtLeastDays,
  isAtMostDays,
  MS_PER_DAY,
  parseDuration,
  subtractDuration,
  tryParseDuration,
} from '../../src/rotation/duration.js';

const utc = (iso: string) => new Date(iso);
const add = (iso: string, text: string) => addDuration(utc(iso), parseDuration(text)).toISOString();
const sub = (iso: string, text: string) => subtractDuration(utc(iso), parseDuration(text)).toISOString();

test('parses the durations rotation policies use', (t) => {
  t.deepEqual(parseDuration('P18M'), duration({ months: 18 }));
  t.deepEqual(parseDuration('P2Y'), duration({ years: 2 }));
  t.deepEqual(parseDuration('P30D'), duration({ days: 30 }));
  t.deepEqual(parseDuration('P1Y10D'), duration({ years: 1, days: 10 }));
  t.deepEqual(parseDuration('PT48H'), duration({ hours: 48 }));
  t.deepEqual(parseDuration('P2W'), duration({ weeks: 2 }));
  t.deepEqual(parseDuration('P1Y2M3W4DT5H6M7S'), {
    years: 1,
    months: 2,
    weeks: 3,
    days: 4,
    hours: 5,
    minutes: 6,
    seconds: 7,
  });
  t.deepEqual(parseDuration('PT0S'), duration({}));
  t.deepEqual(parseDuration('P0D'), duration({}));
});

test('rejects garbage with a typed error naming the field', (t) => {
  for (const text of [
    '',
    'P',
    'PT',
    'P1',
    '18M',
    'p18m',
    'P18m',
    'P1.5Y',
    'PT0.5S',
    '-P1D',
    'P-1D',
    'P1D2Y',
    'P1DT',
    'PT1D',
    'P1H',
    'P1M1Y',
    ' P1D',
    'P1D ',
    'P1Y\n',
    'P9999999999Y',
    `P${'1'.repeat(70)}D`,
  ]) {
    const error = t.throws(
      () => parseDuration(text, 'attributes.expiryTime'),
      { instanceOf: InvalidDurationError },
      text,
    );
    t.is(error?.field, 'attributes.expiryTime');
    t.is(error?.code, 'ERR_INVALID_DURATION');
    t.true(error instanceof InvalidArgumentError);
    t.regex(error?.message ?? '', /attributes\.expiryTime/);
  }
  t.throws(() => parseDuration(18 as unknown as string), { instanceOf: InvalidDurationError });
  t.is(tryParseDuration('P1X'), undefined);
  t.deepEqual(tryParseDuration('P1D'), duration({ days: 1 }));
});

test('formats canonically and keeps components as given', (t) => {
  t.is(formatDuration(parseDuration('P12M')), 'P12M');
  t.is(formatDuration(parseDuration('P1Y')), 'P1Y');
  t.is(formatDuration(parseDuration('P0Y0M1D')), 'P1D');
  t.is(formatDuration(parseDuration('P0D')), 'PT0S');
  t.is(formatDuration(parseDuration('P1DT0H')), 'P1D');
  t.is(formatDuration(parseDuration('PT36H')), 'PT36H');
  t.is(formatDuration(duration({ years: 1, weeks: 2, minutes: 3 })), 'P1Y2WT3M');
  t.false(durationsEqual(parseDuration('P1Y'), parseDuration('P12M')));
  t.true(durationsEqual(parseDuration('P1Y'), parseDuration('P1Y0M')));
  t.throws(() => duration({ days: -1 }), { instanceOf: InvalidArgumentError });
  t.throws(() => duration({ days: 1.5 }), { instanceOf: InvalidArgumentError });
});

test('months clamp to the end of the target month', (t) => {
  t.is(add('2025-01-31T10:00:00Z', 'P1M'), '2025-02-28T10:00:00.000Z');
  t.is(add('2024-01-31T10:00:00Z', 'P1M'), '2024-02-29T10:00:00.000Z');
  t.is(add('2024-03-31T00:00:00Z', 'P1M'), '2024-04-30T00:00:00.000Z');
  t.is(add('2024-01-30T00:00:00Z', 'P1M'), '2024-02-29T00:00:00.000Z');
  t.is(add('2024-01-15T00:00:00Z', 'P1M'), '2024-02-15T00:00:00.000Z');
  t.is(add('2024-12-31T23:59:59Z', 'P2M'), '2025-02-28T23:59:59.000Z');
  t.is(add('2024-08-31T00:00:00Z', 'P18M'), '2026-02-28T00:00:00.000Z');
  // months first, then days: Jan 31 + 1M = Feb 28, + 1D = Mar 1
  t.is(add('2025-01-31T00:00:00Z', 'P1M1D'), '2025-03-01T00:00:00.000Z');
});

test('leap years: Feb 29 plus a year, P1Y and P12M agree', (t) => {
  t.is(add('2024-02-29T12:00:00Z', 'P1Y'), '2025-02-28T12:00:00.000Z');
  t.is(add('2024-02-29T12:00:00Z', 'P12M'), '2025-02-28T12:00:00.000Z');
  t.is(add('2024-02-29T12:00:00Z', 'P4Y'), '2028-02-29T12:00:00.000Z');
  t.is(add('2024-02-29T12:00:00Z', 'P48M'), '2028-02-29T12:00:00.000Z');
  t.is(add('2023-03-01T00:00:00Z', 'P1Y'), '2024-03-01T00:00:00.000Z');
  t.is(add('2100-02-28T00:00:00Z', 'P1D'), '2100-03-01T00:00:00.000Z'); // 2100 is not a leap year
  t.is(add('2000-02-28T00:00:00Z', 'P1D'), '2000-02-29T00:00:00.000Z'); // 2000 is
  t.is(add('2023-06-01T00:00:00Z', 'P1Y'), add('2023-06-01T00:00:00Z', 'P12M'));
  t.is(add('2024-01-01T00:00:00Z', 'P1Y'), '2025-01-01T00:00:00.000Z'); // 366 days
  t.is(add('2024-01-01T00:00:00Z', 'P365D'), '2024-12-31T00:00:00.000Z');
});

test('hours cross days exactly and weeks are 7 days', (t) => {
  t.is(add('2024-02-28T23:00:00Z', 'PT48H'), '2024-03-01T23:00:00.000Z');
  t.is(add('2024-12-31T23:30:00Z', 'PT1H'), '2025-01-01T00:30:00.000Z');
  t.is(add('2024-12-31T23:59:59Z', 'PT1S'), '2025-01-01T00:00:00.000Z');
  t.is(add('2024-01-01T00:00:00Z', 'P2W'), '2024-01-15T00:00:00.000Z');
  t.is(add('2024-01-01T00:00:00Z', 'PT90M'), '2024-01-01T01:30:00.000Z');
  // no DST in UTC: 24 hours is a day even on European DST change days
  t.is(add('2024-03-30T12:00:00Z', 'PT24H'), add('2024-03-30T12:00:00Z', 'P1D'));
});

test('subtractDuration clamps too and is not always the inverse', (t) => {
  t.is(sub('2025-03-31T00:00:00Z', 'P1M'), '2025-02-28T00:00:00.000Z');
  t.is(sub('2025-02-28T00:00:00Z', 'P1M'), '2025-01-28T00:00:00.000Z');
  t.is(sub('2025-03-01T00:00:00Z', 'P30D'), '2025-01-30T00:00:00.000Z');
  t.is(sub('2025-01-01T00:30:00Z', 'PT1H'), '2024-12-31T23:30:00.000Z');
  t.is(sub('2025-02-28T00:00:00Z', 'P1Y'), '2024-02-28T00:00:00.000Z');
  t.is(sub('2025-03-01T00:00:00Z', 'P1M1D'), '2025-01-31T00:00:00.000Z');
});

test('years before 100 are not remapped to the 1900s', (t) => {
  const start = new Date(0);
  start.setUTCFullYear(50, 0, 31);
  const out = addDuration(start, parseDuration('P1M'));
  t.is(out.getUTCFullYear(), 50);
  t.is(out.getUTCMonth(), 1);
  t.is(out.getUTCDate(), 28);
});

test('invalid dates and out-of-range results are typed errors', (t) => {
  t.throws(() => addDuration(new Date(Number.NaN), parseDuration('P1D')), {
    instanceOf: InvalidArgumentError,
  });
  t.throws(() => addDuration(new Date(8.64e15), parseDuration('P1D')), { instanceOf: InvalidArgumentError });
  t.throws(() => addDuration(new Date(0), parseDuration('P999999999Y')), {
    instanceOf: InvalidArgumentError,
  });
});

test('bounds: calendar durations have exact min and max day counts', (t) => {
  t.is(durationMinDays(parseDuration('P1M')), 28);
  t.is(durationMaxDays(parseDuration('P1M')), 31);
  t.is(durationMinDays(parseDuration('P2M')), 59);
  t.is(durationMaxDays(parseDuration('P2M')), 62);
  t.is(durationMinDays(parseDuration('P1Y')), 365);
  t.is(durationMaxDays(parseDuration('P1Y')), 366);
  t.is(durationMinDays(parseDuration('P12M')), 365);
  t.is(durationMinDays(parseDuration('P2Y')), 730);
  t.is(durationMaxDays(parseDuration('P2Y')), 731);
  t.is(durationMinDays(parseDuration('P30D')), 30);
  t.is(durationMaxDays(parseDuration('P30D')), 30);
  t.is(durationMinDays(parseDuration('PT36H')), 1.5);
  t.true(isAtLeastDays(parseDuration('P1M'), 28));
  t.false(isAtLeastDays(parseDuration('P1M'), 29));
  t.false(isAtMostDays(parseDuration('P2Y'), 730));
  t.true(isAtMostDays(parseDuration('P2Y'), 731));
  t.true(isAtMostDays(parseDuration('P18M'), 730));
  t.deepEqual(durationBoundsMs(parseDuration('P1W')), { minMs: 7 * MS_PER_DAY, maxMs: 7 * MS_PER_DAY });
});

test('gaps between two offsets from the same start', (t) => {
  // P2Y - P18M is 6 calendar months: 181 to 184 days
  const gap = durationGapBoundsMs(parseDuration('P2Y'), parseDuration('P18M'));
  t.is(gap.minMs / MS_PER_DAY, 181);
  t.is(gap.maxMs / MS_PER_DAY, 184);
  t.deepEqual(durationGapBoundsMs(parseDuration('P1Y'), parseDuration('P12M')), { minMs: 0, maxMs: 0 });
  t.is(compareDurations(parseDuration('P1Y'), parseDuration('P12M')), 0);
  t.is(compareDurations(parseDuration('P1M'), parseDuration('P30D')), undefined);
  t.is(compareDurations(parseDuration('P1M'), parseDuration('P32D')), -1);
  t.is(compareDurations(parseDuration('P1M'), parseDuration('P27D')), 1);
  t.is(compareDurations(parseDuration('P2Y'), parseDuration('P18M')), 1);
  // expiry P2Y, back P30D: 700 to 701 days after creation
  const rem = durationRemainderBoundsMs(parseDuration('P2Y'), parseDuration('P30D'));
  t.is(rem.minMs / MS_PER_DAY, 700);
  t.is(rem.maxMs / MS_PER_DAY, 701);
  // expiry P2M, back P1M: between 28 and 31 days after creation, whatever the clamps do
  const rem2 = durationRemainderBoundsMs(parseDuration('P2M'), parseDuration('P1M'));
  t.true(rem2.minMs / MS_PER_DAY >= 28 && rem2.minMs / MS_PER_DAY <= 31);
  t.true(rem2.maxMs / MS_PER_DAY >= 28 && rem2.maxMs / MS_PER_DAY <= 31);
});

const durationArb: fc.Arbitrary<Duration> = fc
  .record({
    years: fc.nat(30),
    months: fc.nat(40),
    weeks: fc.nat(60),
    days: fc.nat(400),
    hours: fc.nat(100),
    minutes: fc.nat(200),
    seconds: fc.nat(200),
  })
  .map((parts) => duration(parts));
const dateArb = fc
  .date({ min: new Date('1900-01-01T00:00:00Z'), max: new Date('2300-01-01T00:00:00Z'), noInvalidDate: true })
  .map((d) => new Date(Math.floor(d.getTime() / 1000) * 1000));

test('property: parse(format(d)) equals d', (t) => {
  fc.assert(
    fc.property(durationArb, (d) => {
      const text = formatDuration(d);
      return durationsEqual(parseDuration(text), d) && formatDuration(parseDuration(text)) === text;
    }),
  );
  t.pass();
});

test('property: addDuration is monotonic in the start date and in the duration', (t) => {
  fc.assert(
    fc.property(dateArb, dateArb, durationArb, (a, b, d) => {
      const [early, late] = a.getTime() <= b.getTime() ? [a, b] : [b, a];
      return addDuration(early, d).getTime() <= addDuration(late, d).getTime();
    }),
  );
  fc.assert(
    fc.property(dateArb, durationArb, durationArb, (s, d, extra) => {
      // adding more of every component never ends earlier
      const bigger = duration({
        years: d.years + extra.years,
        months: d.months + extra.months,
        weeks: d.weeks + extra.weeks,
        days: d.days + extra.days,
        hours: d.hours + extra.hours,
        minutes: d.minutes + extra.minutes,
        seconds: d.seconds + extra.seconds,
      });
      return addDuration(s, d).getTime() <= addDuration(s, bigger).getTime() && addDuration(s, d) >= s;
    }),
  );
  t.pass();
});

test('property: every actual span lies within durationBoundsMs', (t) => {
  fc.assert(
    fc.property(dateArb, durationArb, (s, d) => {
      const span = addDuration(s, d).getTime() - s.getTime();
      const bounds = durationBoundsMs(d);
      return span >= bounds.minMs && span <= bounds.maxMs;
    }),
    { numRuns: 300 },
  );
  t.pass();
});

test('property: years equal twelve months when adding and subtracting', (t) => {
  fc.assert(
    fc.property(dateArb, fc.nat(50), (s, years) => {
      const y = duration({ years });
      const m = duration({ months: years * 12 });
      return (
        addDuration(s, y).getTime() === addDuration(s, m).getTime() &&
        subtractDuration(s, y).getTime() === subtractDuration(s, m).getTime()
      );
    }),
  );
  t.pass();
});

/** Independent reference: month shifting through Date's own calendar, clamping by probing day 0. */
function referenceAdd(start: Date, d: Duration): Date {
  const months = start.getUTCMonth() + d.years * 12 + d.months;
  const target = new Date(start.getTime());
  target.setUTCDate(1);
  target.setUTCFullYear(start.getUTCFullYear(), months, 1);
  const lastDay = new Date(target.getTime());
  lastDay.setUTCMonth(lastDay.getUTCMonth() + 1, 0);
  target.setUTCDate(Math.min(start.getUTCDate(), lastDay.getUTCDate()));
  const fixed = ((d.weeks * 7 + d.days) * 24 * 3600 + d.hours * 3600 + d.minutes * 60 + d.seconds) * 1000;
  return new Date(target.getTime() + fixed);
}

test('property: calendar arithmetic matches a Date-based reference, including years before 1970 and 100', (t) => {
  const wideDate = fc
    .date({
      min: new Date('-000500-01-01T00:00:00Z'),
      max: new Date('3000-01-01T00:00:00Z'),
      noInvalidDate: true,
    })
    .map((x) => new Date(Math.floor(x.getTime() / 1000) * 1000));
  fc.assert(
    fc.property(
      wideDate,
      durationArb,
      (s, d) => addDuration(s, d).getTime() === referenceAdd(s, d).getTime(),
    ),
    { numRuns: 2000 },
  );
  t.pass();
});
