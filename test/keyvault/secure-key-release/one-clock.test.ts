/**
 * One clock: the emulated attestation service issues tokens (`iat`/`nbf`/`exp`) and judges evidence
 * certificates by the emulator's virtual clock, the emulated vault judges tokens by it, and `SecureKeyRelease`
 * given `clock: () => e.clock.now()` judges tokens and the vTPM's AK certificate by it too: moving the clock
 * past a token's `exp` costs one attestation, moving it years ahead renews the AK certificate through the
 * emulated IMDS (as Microsoft's guest library renews it 90 days before expiry:
 * Azure/confidential-computing-cvm-guest-attestation @990f662, client-library/src/Attestation/AttestationClient/
 * lib/TpmCertOperations.cpp and AttestationClientImpl.cpp). No recorded IMDS renewal answer exists; the
 * renewed certificate's validity (a year from issue) is the emulator's own.
 * `invalidate()` forces a new attestation, and a cached token the vault refuses (stale by the vault's clock) is
 * replaced by one fresh attestation, once.
 * The 403 the proxy injects is the refusal body Key Vault documents for a failed release ("Target environment
 * attestation statement cannot be verified.", the answer the emulated vault gives too: test/keyvault/secure-key-release/swtpm.test.ts).
 */
import test from 'ava';
import { X509Certificate } from 'node:crypto';
import { AttestationRequestError, ReleaseDeniedError } from '../../../src/errors.js';
import { EmulatedAzureVtpmPlatform } from '../../../src/emulator/hardware/emulated-vtpm.js';
import { attest } from '../../../src/maa/client.js';
import { emulator, exportableKey, proxiedEmulator, releaseClient } from '../../helpers/e2e-emulator.js';

const HOUR_MS = 3600_000;

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

test('the emulated attestation service stamps iat, nbf and exp from the virtual clock', async (t) => {
  const e = await emulator(t, { tokenLifetimeSeconds: 3600 });
  await e.clock.advance('P30D');
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const before = e.clock.nowSeconds();
  const result = await attest(platform, { endpoint: e.attestationUrl, ca: e.caPem, now: () => e.clock.now() });
  const after = e.clock.nowSeconds();
  const iat = result.claims.iat!;
  t.true(iat >= before && iat <= after, 'iat is virtual now (30 days ahead of the system clock)');
  t.is(result.claims.nbf, iat);
  t.is(result.claims.exp, iat + 3600);
  t.true(iat * 1000 > Date.now() + 29 * 24 * HOUR_MS);
});

test("the emulated vault refuses a token whose exp is in the virtual past", async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'k', 'oct-HSM');
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const { token } = await attest(platform, { endpoint: e.attestationUrl, ca: e.caPem, now: () => e.clock.now() });
  const client = e.keyClient();
  await client.releaseKey('k', token); // valid now
  await e.clock.advance(9 * HOUR_MS); // past the 8-hour lifetime by the virtual clock only
  const error = await t.throwsAsync(client.releaseKey('k', token));
  t.is((error as { statusCode?: number }).statusCode, 403);
  t.deepEqual(
    e.vault.releaseDecisions().map((d) => d.allowed),
    [true, false],
  );
});

test('with the emulator clock injected, a release after the token expired by that clock re-attests once', async (t) => {
  const e = await emulator(t);
  for (const name of ['a', 'b', 'c']) await exportableKey(e, name, 'oct-HSM');
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const skr = releaseClient(t, e, platform, { clock: () => e.clock.now() });
  await skr.releaseKey(`${e.vaultUrl}/keys/a`);
  await e.clock.advance(HOUR_MS);
  await skr.releaseKey(`${e.vaultUrl}/keys/b`);
  t.is(e.attestation.counters.attestations, 1, 'an hour in, the token still serves');
  await e.clock.advance(8 * HOUR_MS); // past the 8-hour token lifetime, by the emulator's clock only
  await skr.releaseKey(`${e.vaultUrl}/keys/c`);
  t.is(e.attestation.counters.attestations, 2, 'the expired token was replaced before the release');
  t.like(skr.stats(), { attestations: 2, releases: 3, releaseFailures: 0 });
  t.true(e.vault.releaseDecisions().every((d) => d.allowed), 'the vault never saw the stale token');
});

test('two and three virtual years on, releases still work: the AK certificate is renewed through the emulated IMDS, the release signer on the vault clock', async (t) => {
  const e = await emulator(t);
  for (const name of ['a', 'b', 'c', 'd']) await exportableKey(e, name, 'oct-HSM');
  const platform = (await e.platform('emulated-azure-vtpm')) as EmulatedAzureVtpmPlatform;
  t.teardown(() => platform.close());
  const first = new X509Certificate(platform.akCertificate);
  const skr = releaseClient(t, e, platform, { clock: () => e.clock.now() });
  await skr.releaseKey(`${e.vaultUrl}/keys/a`);
  t.is(e.imds.counters.renew, 0, 'a certificate a year from expiry is not renewed');

  // Past the first certificate's notAfter (a year after issue) by more than a year, by the virtual clock only.
  await e.clock.advance('P2Y1M');
  t.true(e.clock.nowMs() > new Date(first.validTo).getTime());
  await skr.releaseKey(`${e.vaultUrl}/keys/b`);
  t.is(e.imds.counters.renew, 1, 'renewed once, through IMDS');
  t.is(e.attestation.counters.attestations, 2);
  const renewed = new X509Certificate(platform.akCertificate);
  t.true(renewed.publicKey.equals(first.publicKey), 'the same AK');
  const notBefore = new Date(renewed.validFrom).getTime();
  const notAfter = new Date(renewed.validTo).getTime();
  t.true(notBefore <= e.clock.nowMs() && notAfter > e.clock.nowMs() + 300 * 24 * HOUR_MS, 'valid from virtual now');

  // The renewed certificate is kept: the next attestation sends it without renewing again.
  await e.clock.advance('P1M');
  await skr.releaseKey(`${e.vaultUrl}/keys/c`);
  t.like(e.attestation.counters, { attestations: 3, rejected: 0 });
  t.is(e.imds.counters.renew, 1);
  t.like(skr.stats(), { attestations: 3, releases: 3, releaseFailures: 0 });

  // A year later still, past the renewed certificate and the vault's first release signer (825 days): the
  // certificate is renewed again and the vault signs with a signer issued on its clock.
  await e.clock.advance('P1Y');
  await skr.releaseKey(`${e.vaultUrl}/keys/d`);
  t.is(e.imds.counters.renew, 2);
  t.like(skr.stats(), { attestations: 4, releases: 4, releaseFailures: 0 });
});

test('without renewal, the emulated attestation service refuses an AK certificate expired by the virtual clock', async (t) => {
  const e = await emulator(t);
  // An emulated vTPM on the virtual clock, but with no IMDS to renew through.
  const platform = await EmulatedAzureVtpmPlatform.create({ amd: e.amd, akCa: e.akCa, clock: () => e.clock.now() });
  t.teardown(() => platform.close());
  await e.clock.advance('P13M');
  const error = await t.throwsAsync(
    attest(platform, { endpoint: e.attestationUrl, ca: e.caPem, now: () => e.clock.now() }),
  );
  t.true(error instanceof AttestationRequestError && error.statusCode === 400, 'refused as bad evidence');
  t.regex(error!.message, /AK certificate is not valid at/);
  t.is(e.attestation.counters.rejected, 1);
  t.is(e.imds.counters.renew, 0);
});

test('a token the vault finds expired by its clock (the client clock lagging) is refused, and the client re-attests once', async (t) => {
  const { e, vault, maa } = await proxiedEmulator(t);
  await exportableKey(e, 'a', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  await exportableKey(e, 'b', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  // The guest's clock: the emulator's, less a lag (a VM resumed from a saved state, before NTP corrects it).
  let lagMs = 0;
  const skr = releaseClient(t, e, platform, {
    attestationEndpoint: maa.url,
    clock: () => new Date(e.clock.nowMs() - lagMs),
  });
  await skr.releaseKey(`${vault.url}/keys/a`);
  await e.clock.advance(9 * HOUR_MS);
  lagMs = 9 * HOUR_MS; // by the guest's clock the token is still fresh; by the vault's it expired an hour ago
  let releases = 0;
  vault.plan = (r) => {
    if (r.path.includes('/release') && r.headers.authorization !== undefined && releases++ === 0) lagMs = 0;
    return 'pass'; // the emulated vault answers itself
  };
  const released = await skr.releaseKey(`${vault.url}/keys/b`);
  t.is(released.name, 'b');
  t.is(releases, 2, 'the refused release and the one retry with a fresh token');
  t.deepEqual(
    e.vault.releaseDecisions().map((d) => [d.key, d.allowed]),
    [
      ['a', true],
      ['b', false],
      ['b', true],
    ],
  );
  t.is(e.attestation.counters.attestations, 2);
  t.like(skr.stats(), { attestations: 2, releases: 2 });
});

test('with the emulator clock injected, a versionless id resolves to the version last released until currentVersionTtlMs passes by that clock', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'current', 'oct-HSM');
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const skr = releaseClient(t, e, platform, { clock: () => e.clock.now(), currentVersionTtlMs: 60_000 });
  const keyId = `${e.vaultUrl}/keys/current`;
  const first = await skr.releaseKey(keyId);
  await e.clock.advance(59_000);
  await skr.releaseKey(keyId);
  t.like(skr.stats(), { releases: 1, cacheHits: 1 }, '59 virtual seconds in, the mapping still holds');
  // A new version now; the system clock has not moved a minute, the virtual one has.
  await e.keyClient().rotateKey('current');
  await e.clock.advance(2_000);
  const second = await skr.releaseKey(keyId);
  t.like(skr.stats(), { releases: 2 }, 'past the TTL by the virtual clock, the vault is asked again');
  t.not(second.kid, first.kid, 'and the new current version is released');
});
