import { runSoak } from '../../../bench/soak.js';
import { swtpmTest } from '../../helpers/swtpm.js';

// The short version of `npm run soak`: counts, not time. Each release is a real release + TPM unwrap.
const RELEASES = 300;
const PER_SESSION = 50;

swtpmTest(`soak: ${RELEASES} releases on swtpm without a resource manager leave no handle and do not accumulate`, async (t) => {
  t.timeout(600_000);
  const result = await runSoak({ releases: RELEASES, perSession: PER_SESSION, checkEvery: 50 });
  t.is(result.freshReleases, RELEASES, 'every call was a new release, not a cached key');
  t.is(
    result.tpmDecrypts,
    RELEASES + result.attestations,
    'each unwrapped in the TPM (and each attestation answer opened there)',
  );
  t.is(result.sessions, RELEASES / PER_SESSION);
  t.is(result.attestations, result.sessions, 'one attestation per SecureKeyRelease');
  t.deepEqual(result.handlesAfter, { transient: 0, sessions: 0 }, 'nothing left loaded');
  t.is(result.maxSessionsDuring, 0, 'no policy session outlives its decrypt');
  t.is(result.maxTransientDuring, 1, 'only the transfer key of the open platform is loaded');
  t.is(
    result.commandsPerSession.last,
    result.commandsPerSession.first,
    'the last session needs as many TPM commands as the first',
  );
  t.true(
    result.samples.every((s) => s.handles.transient <= 1 && s.handles.sessions === 0),
    'at every check',
  );
  t.log(
    `${RELEASES} releases: ${result.tpmCommands} TPM commands, heap ${result.memory.baselineHeapMb.toFixed(1)} -> ${result.memory.finalHeapMb.toFixed(1)} MB`,
  );
});
