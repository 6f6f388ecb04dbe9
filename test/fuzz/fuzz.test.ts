import { readdirSync, readFileSync } from 'node:fs';
import test from 'ava';
import fc from 'fast-check';
import { checkOne, targets } from './targets.js';

// A short run in every `npm test`; `npm run fuzz` runs the same targets for longer.
const runs = Number(process.env.FUZZ_RUNS ?? 150);

for (const target of targets) {
  test(`fuzz ${target.name}: only typed errors (${runs} inputs)`, async (t) => {
    await fc.assert(
      fc.asyncProperty(target.arbitrary, (input) => checkOne(target, input)),
      { numRuns: runs },
    );
    t.pass();
  });
}

// Every finding a longer run saved becomes a regression case (test/fuzz/findings/<target>-*.json).
const findingsDir = new URL('./findings/', import.meta.url);
for (const file of readdirSync(findingsDir).filter((f) => f.endsWith('.json'))) {
  test(`fuzz regression ${file}`, async (t) => {
    const finding = JSON.parse(readFileSync(new URL(file, findingsDir), 'utf8')) as {
      target: string;
      input: unknown;
      bytes?: string;
    };
    const target = targets.find((x) => x.name === finding.target);
    if (!target) return t.fail(`unknown fuzz target ${finding.target}`);
    await t.notThrowsAsync(
      checkOne(
        target,
        finding.bytes !== undefined ? new Uint8Array(Buffer.from(finding.bytes, 'base64')) : finding.input,
      ),
    );
  });
}
