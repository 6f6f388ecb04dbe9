import test from 'ava';
import fc from 'fast-check';
import { MalformedDataError } from '../../src/errors.js';
import { parseSnpReport } from '../../src/snp/report.js';
import { aciReport, debugReport } from './_fixtures.js';

const parsesOrTypedError = (bytes: Uint8Array): boolean => {
  try {
    parseSnpReport(bytes);
    return true;
  } catch (error) {
    return error instanceof MalformedDataError && error.code === 'ERR_SNP_REPORT_MALFORMED';
  }
};

test('random bytes give a report or a typed error', (t) => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 1300 }), parsesOrTypedError), {
    numRuns: 500,
  });
  fc.assert(fc.property(fc.uint8Array({ minLength: 1184, maxLength: 1184 }), parsesOrTypedError), {
    numRuns: 500,
  });
  t.pass();
});

test('mutated real reports give a report or a typed error', (t) => {
  const seeds = [aciReport(), debugReport()];
  fc.assert(
    fc.property(
      fc.constantFrom(...seeds),
      fc.array(fc.tuple(fc.nat(1183), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
      fc.option(fc.nat(1300), { nil: undefined }),
      (seed, edits, cut) => {
        const bytes = Buffer.from(seed);
        for (const [at, value] of edits) bytes[at] = value;
        return parsesOrTypedError(cut === undefined ? bytes : bytes.subarray(0, cut));
      },
    ),
    { numRuns: 1000 },
  );
  t.pass();
});
