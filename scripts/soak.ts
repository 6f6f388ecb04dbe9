/**
 * `npm run soak [-- --releases N --per-session N --rss-bound-mb N]`: 10,000 releases on swtpm without a
 * resource manager. Passes when no TPM handle is left loaded and RSS grew less than the bound after warm-up.
 * Needs swtpm; run with --expose-gc (the npm script does) so memory is measured after a full collection.
 */
import { parseArgs } from 'node:util';
import { runSoak } from '../bench/soak.js';
import { haveSwtpm } from '../test/helpers/swtpm.js';

const { values } = parseArgs({
  options: {
    releases: { type: 'string', default: '10000' },
    'per-session': { type: 'string', default: '50' },
    // The emulator runs in this process and keeps a record of every release decision, so part of any growth
    // is the emulator's own bookkeeping, not the library's.
    'rss-bound-mb': { type: 'string', default: '64' },
  },
});

if (!haveSwtpm) {
  console.error('soak: swtpm is not installed (apt-get install swtpm); nothing to run');
  process.exit(2);
}
const releases = Number(values.releases);
const perSession = Number(values['per-session']);
const boundMb = Number(values['rss-bound-mb']);
console.error(`soak: ${releases} releases, a new platform and SecureKeyRelease every ${perSession}`);
const result = await runSoak({
  releases,
  perSession,
  onProgress: (p) =>
    console.error(
      `soak: ${p.done} releases, rss ${p.rssMb.toFixed(1)} MB, heap ${p.heapMb.toFixed(1)} MB, loaded handles ${p.handles.transient} transient / ${p.handles.sessions} sessions`,
    ),
});
const leaked = result.handlesAfter.transient + result.handlesAfter.sessions;
const ok =
  leaked === 0 &&
  result.maxSessionsDuring === 0 &&
  result.maxTransientDuring <= 1 &&
  result.memory.rssGrowthMb < boundMb &&
  result.freshReleases === releases &&
  result.tpmDecrypts === releases + result.attestations;
const { samples: _samples, ...summary } = result;
console.log(JSON.stringify({ ...summary, rssBoundMb: boundMb, ok }, null, 2));
console.log(
  `soak ${ok ? 'passed' : 'FAILED'}: ${releases} releases (${result.attestations} attestations, ${result.sessions} transfer keys) ` +
    `in ${(result.elapsedMs / 1000).toFixed(0)} s; leaked handles ${leaked}; RSS ${result.memory.baselineRssMb.toFixed(1)} -> ` +
    `${result.memory.finalRssMb.toFixed(1)} MB (growth ${result.memory.rssGrowthMb.toFixed(1)} MB, bound ${boundMb} MB); ` +
    `heap growth ${result.memory.heapGrowthMb.toFixed(1)} MB`,
);
process.exit(ok ? 0 : 1);
