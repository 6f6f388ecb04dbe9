/**
 * Token freshness: `invalidate()` forces a new attestation, and a cached token the vault refuses (stale by the
 * vault's clock) is replaced by one fresh attestation, once.
 * The 403 the proxy injects is the refusal body Key Vault documents for a failed release ("Target environment
 * attestation statement cannot be verified.", the answer the emulated vault gives too: test/e2e/release.test.ts).
 */
import test from 'ava';
import { ReleaseDeniedError } from '../../src/errors.js';
import { exportableKey, proxiedEmulator, releaseClient } from './_emulator.js';

const FORBIDDEN = JSON.stringify({
  error: {
    code: 'Forbidden',
    message: 'Target environment attestation statement cannot be verified.',
    innererror: { code: 'AccessDenied' },
  },
});

test('invalidate() with no key id forces a new attestation on the next call', async (t) => {
  const { e, vault, maa } = await proxiedEmulator(t);
  await exportableKey(e, 'k', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const skr = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
  await skr.releaseKey(`${vault.url}/keys/k`);
  await skr.releaseKey(`${vault.url}/keys/k`);
  t.is(skr.stats().attestations, 1, 'the second call was a cache hit');
  skr.invalidate();
  await skr.releaseKey(`${vault.url}/keys/k`);
  t.like(skr.stats(), { attestations: 2, releases: 2 });
});

test('a release refused with a cached token re-attests once; one refused with a fresh token does not', async (t) => {
  const { e, vault, maa } = await proxiedEmulator(t);
  await exportableKey(e, 'a', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  await exportableKey(e, 'b', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const skr = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
  await skr.releaseKey(`${vault.url}/keys/a`);
  let refusals = 0;
  vault.plan = (r) =>
    r.path.includes('/release') && r.headers.authorization !== undefined && refusals++ === 0 ? { status: 403, body: FORBIDDEN } : 'pass';
  const released = await skr.releaseKey(`${vault.url}/keys/b`);
  t.is(released.name, 'b');
  t.is(refusals, 2, 'the refused release and the one retry with a fresh token');
  t.like(skr.stats(), { attestations: 2, releases: 2 });

  // A token attested for this very call is not stale: its refusal is final, with no second attestation.
  const fresh = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
  vault.plan = (r) => (r.path.includes('/release') && r.headers.authorization !== undefined ? { status: 403, body: FORBIDDEN } : 'pass');
  await t.throwsAsync(fresh.releaseKey(`${vault.url}/keys/b`), { instanceOf: ReleaseDeniedError });
  t.is(fresh.stats().attestations, 1);
});
