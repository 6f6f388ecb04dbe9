/**
 * Replay conformance: every recording in test/fixtures/kv-recordings (real Azure Key Vault and Managed HSM
 * answers recorded by the Azure SDK for JS and for Python; provenance in each file's `source` and in
 * test/fixtures/README.md) is replayed against the emulated vault, and the emulator must answer with the
 * same status, error code and body shape, except for the documented differences in replay-exceptions.ts.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import {
  type Difference,
  exceptionFor,
  formatTable,
  operationOf,
  type Recording,
  replay,
  shapeDifferences,
} from '../../helpers/vault-replay.js';
import { startVaultWithIssuer } from '../../helpers/vault-setup.js';
import { REPLAY_EXCEPTIONS } from './replay-exceptions.js';

const DIR = join(import.meta.dirname, '..', '..', 'fixtures', 'kv-recordings');
const recordings: Recording[] = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((name) => ({ name, ...(JSON.parse(readFileSync(join(DIR, name), 'utf8')) as Omit<Recording, 'name'>) }));

test('the emulated vault answers every recorded request like the real service, except documented differences', async (t) => {
  t.true(recordings.length >= 10);
  // One vault of each flavour for all: the recordings use distinct key names. A recording made against a
  // Managed HSM (its host says so) is replayed against the Managed HSM flavour.
  const targets = new Map<string, Parameters<typeof replay>[1]>();
  for (const flavour of ['vault', 'managedhsm'] as const) {
    const { emu, issuer } = await startVaultWithIssuer(t, { flavour });
    targets.set(flavour, {
      vaultUrl: emu.vaultUrl,
      caPem: emu.caPem,
      token: async () => (await emu.credential.getToken(`${emu.flavour.resource}/.default`)).token,
      issuer: { url: issuer.url, token: (claims: Record<string, unknown>) => issuer.token(claims) },
    });
  }
  const all: Difference[] = [];
  for (const recording of recordings) {
    const managedHsm = recording.Entries.some((e) => /\.managedhsm\.azure\.net/i.test(e.RequestUri));
    all.push(...(await replay(recording, targets.get(managedHsm ? 'managedhsm' : 'vault')!)));
  }
  t.log(`${recordings.length} recordings, ${all.length} differences\n${formatTable(all, REPLAY_EXCEPTIONS)}`);
  const undocumented = all.filter((d) => exceptionFor(d, REPLAY_EXCEPTIONS) === undefined);
  t.deepEqual(undocumented, [], `undocumented differences:\n${formatTable(undocumented, REPLAY_EXCEPTIONS)}`);
  const stale = REPLAY_EXCEPTIONS.filter((x) => !all.some((d) => exceptionFor(d, [x]) === x));
  t.deepEqual(stale, [], 'exceptions that match no difference any more: remove them from replay-exceptions.ts');
});

test('the comparison sees a missing field, a type change, an array length and an extra field', (t) => {
  t.deepEqual(shapeDifferences({ a: 1, b: [1, 2], c: 'x' }, { a: '1', b: [1], d: null }), [
    ['a', 'number', 'string'],
    ['b.length', '2', '1'],
    ['c', 'present (string)', 'absent'],
    ['d', 'absent', 'present (null)'],
  ]);
  t.deepEqual(shapeDifferences({ a: { n: 'x', e: 'AQAB' } }, { a: { n: 'y', e: 'AAEAAQ' } }), []);
});

test('operations are named by their route template', (t) => {
  const kv = 'https://keyvault_name.vault.azure.net';
  t.is(operationOf('POST', `${kv}/keys/k-1//release?api-version=7.4`), 'POST /keys/{name}//release');
  t.is(
    operationOf('POST', `${kv}/keys/k/fc0784580541434b85a12d89ff94a0e9/sign?api-version=7.4`),
    'POST /keys/{name}/{version}/sign',
  );
  t.is(operationOf('POST', `${kv}/keys/restore?api-version=7.4`), 'POST /keys/restore');
  t.is(operationOf('POST', `${kv}/deletedkeys/k/recover?api-version=7.3`), 'POST /deletedkeys/{name}/recover');
});
