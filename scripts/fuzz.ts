/**
 * `npm run fuzz`: runs every fuzz target for a share of a time budget (FUZZ_SECONDS, default 120), then saves
 * each counterexample to test/fuzz/findings/, where `npm test` replays it as a regression case.
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import fc from 'fast-check';
import { checkOne, targets } from '../test/fuzz/targets.js';

const budgetMs = Number(process.env.FUZZ_SECONDS ?? 120) * 1000;
const only = process.argv[2];
const selected = only ? targets.filter((t) => t.name === only) : targets;
if (selected.length === 0) {
  console.error(`no fuzz target named ${only}; targets: ${targets.map((t) => t.name).join(', ')}`);
  process.exit(2);
}
const perTarget = Math.max(1000, Math.floor(budgetMs / selected.length));
let findings = 0;
console.log(`fuzzing ${selected.length} targets, ${Math.round(perTarget / 1000)} s each`);
for (const target of selected) {
  let runs = 0;
  const started = Date.now();
  const result = await fc.check(
    fc.asyncProperty(target.arbitrary, async (input) => {
      runs++;
      await checkOne(target, input);
    }),
    { numRuns: Number.MAX_SAFE_INTEGER, interruptAfterTimeLimit: perTarget, markInterruptAsFailure: false },
  );
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (result.failed && result.counterexample) {
    findings++;
    const input = result.counterexample[0];
    const record =
      input instanceof Uint8Array
        ? { target: target.name, bytes: Buffer.from(input).toString('base64') }
        : { target: target.name, input };
    const id = createHash('sha256').update(JSON.stringify(record)).digest('hex').slice(0, 12);
    const file = new URL(`../test/fuzz/findings/${target.name}-${id}.json`, import.meta.url);
    writeFileSync(file, `${JSON.stringify({ ...record, error: String(result.errorInstance) }, null, 2)}\n`);
    console.log(`  ${target.name.padEnd(18)} FINDING after ${runs} inputs: ${String(result.errorInstance).slice(0, 200)}`);
    console.log(`  ${' '.repeat(18)} saved ${file.pathname}`);
  } else {
    console.log(`  ${target.name.padEnd(18)} ${String(runs).padStart(8)} inputs in ${seconds} s, no finding`);
  }
}
console.log(findings === 0 ? 'fuzz: no findings' : `fuzz: ${findings} finding(s) saved as regression cases`);
process.exitCode = findings === 0 ? 0 : 1;
