/**
 * Picking the flavour: `startEmulator({ managedHsm })` serves a Managed HSM beside the vault with one identity,
 * and `cvm-skr emulator serve --flavour` accepts vault, managedhsm or both.
 */
import { KeyClient } from '@azure/keyvault-keys';
import test from 'ava';
import { parseServeFlavour } from '../../../src/cli/emulator-serve.js';
import { InvalidArgumentError } from '../../../src/errors.js';
import { startEmulator } from '../../../src/emulator/start.js';

test('startEmulator({ managedHsm: true }) serves a Managed HSM beside the vault, reachable with the same credential', async (t) => {
  const e = await startEmulator({ rootKeyBits: 2048, cache: false, vault: { flavour: 'vault' }, managedHsm: true });
  t.teardown(() => e.close());
  const hsm = e.managedHsm!;
  t.is(hsm.flavour.flavour, 'managedhsm');
  t.is(e.vault.flavour.flavour, 'vault');
  t.not(hsm.vaultUrl, e.vaultUrl);
  t.is(hsm.tokenUrl, e.tokenUrl, 'one token endpoint for both');
  t.is(e.environment().CVM_SKR_MANAGED_HSM_URL, hsm.vaultUrl);
  t.is(hsm.clock, e.clock, 'one virtual clock');
  const client = new KeyClient(hsm.vaultUrl, e.credential, {
    disableChallengeResourceVerification: true,
    tlsOptions: { ca: e.caPem },
  });
  t.is((await client.createKey('aes', 'oct-HSM', { keySize: 256 })).keyType, 'oct-HSM');
  t.is((await client.getRandomBytes(8)).length, 8);
  const vaultErr = await t.throwsAsync(e.keyClient().createKey('aes', 'oct-HSM'));
  t.is((vaultErr as unknown as { statusCode: number }).statusCode, 400, 'the vault beside it keeps vault rules');
});

test('startEmulator without managedHsm serves no Managed HSM', async (t) => {
  const e = await startEmulator({ rootKeyBits: 2048, cache: false });
  t.teardown(() => e.close());
  t.is(e.managedHsm, undefined);
  t.false('CVM_SKR_MANAGED_HSM_URL' in e.environment());
});

test('emulator serve --flavour takes vault, managedhsm or both and refuses anything else', (t) => {
  t.is(parseServeFlavour(undefined), undefined);
  for (const v of ['vault', 'managedhsm', 'both'] as const) t.is(parseServeFlavour(v), v);
  for (const v of ['hsm', 'Vault', '']) {
    t.throws(() => parseServeFlavour(v), { instanceOf: InvalidArgumentError, message: /--flavour must be/ });
  }
});
