/**
 * The release step of SecureKeyRelease end to end against the emulator: answers shaped like the real ones
 * unwrap, and genuinely signed answers that are not the answer to this request are refused.
 *
 * Real shapes: test/fixtures/real-release/ (Azure/azure-sdk-for-js sdk/keyvault/keyvault-keys/recordings/,
 * paths and commits in sources.json). That the service echoes the request's nonce as `request.nonce` is
 * recorded for a Managed HSM only: a release sent with "nonce":"nonce" signed request.nonce "nonce"
 * (test/fixtures/real-release/mhsm-import-release-nonce.json, Azure/azure-sdk-for-js @3357deb7). No recorded
 * call to a regular vault sent a nonce, so that a regular vault echoes it too has no artifact. The REST API
 * calls the nonce "a client provided nonce for freshness" (KeyReleaseParameters, e.g. Azure/azure-sdk-for-java
 * sdk/keyvault/azure-security-keyvault-keys/.../implementation/KeyReleaseParameters.java), and the Key Vault
 * team describes it as "an identifier the client can send in order to detect freshness"
 * (Azure/azure-sdk-for-python issue #18089); the emulator echoes it on both flavours.
 */
import { createHash, createPublicKey, sign, verify, X509Certificate } from 'node:crypto';
import test from 'ava';
import { KeyVersionUnavailableError, ReleaseDeniedError, ReleaseResponseInvalidError } from '../../../src/errors.js';
import type { SecureKeyRelease } from '../../../src/keyvault/secure-key-release.js';
import type { FaultProxy, ProxiedRequest } from '../../helpers/fault-proxy.js';
import { exportableKey, proxiedEmulator, releaseClient, vaultPublicKey } from '../../helpers/e2e-emulator.js';

// The SDK first sends the release without a body or credentials to get the 401 challenge; only the
// authorized attempt carries the request.
const isRelease = (r: ProxiedRequest) =>
  r.method === 'POST' && /\/release(\?|$)/.test(r.path) && r.headers.authorization !== undefined;
const decode = (jws: string) =>
  JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString('utf8')) as {
    request: { kid: string; nonce?: string };
    response: { key: { key: { kid: string; kty: string; e?: string } } };
  };

/** Lets release answers through and keeps the last one (the JWS). */
function capture(vault: FaultProxy) {
  const seen: { request?: { target: string; nonce?: string; enc?: string }; jws?: string } = {};
  vault.plan = (r) => {
    if (!isRelease(r)) return 'pass';
    seen.request = JSON.parse(r.body.toString('utf8')) as typeof seen.request;
    return {
      rewrite: (body) => {
        seen.jws = (JSON.parse(body.toString('utf8')) as { value: string }).value;
        return body;
      },
    };
  };
  return seen;
}

const answer = (jws: string) => ({ status: 200, body: JSON.stringify({ value: jws }) });

async function setup(t: import('ava').ExecutionContext, options: Parameters<typeof proxiedEmulator>[1] = {}) {
  const { e, vault, maa } = await proxiedEmulator(t, options);
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  // Tokens name the attestation proxy as their issuer.
  const client = (overrides: Parameters<typeof releaseClient>[3] = {}): SecureKeyRelease =>
    releaseClient(t, e, platform, { attestationEndpoint: maa.url, ...overrides });
  return { e, vault, client };
}

test('a regular-vault-shaped release (e "AAEAAQ", versionless request.kid, three certificates) unwraps end to end', async (t) => {
  const { e, vault, client } = await setup(t);
  await exportableKey(e, 'rsa', 'RSA-HSM');
  const seen = capture(vault);
  const s = client();
  const released = await s.releaseKey(`${vault.url}/keys/rsa`);
  const payload = decode(seen.jws!);
  t.is(payload.response.key.key.e, 'AAEAAQ');
  t.is(payload.response.key.key.kty, 'RSA-HSM');
  t.is(payload.request.kid, `${e.vaultUrl}/keys/rsa`);
  t.is(payload.request.nonce, seen.request!.nonce);
  const header = JSON.parse(Buffer.from(seen.jws!.split('.')[0]!, 'base64url').toString('utf8')) as {
    x5c: string[];
    typ?: string;
  };
  t.is(header.x5c.length, 3);
  t.is(header.typ, 'JWT');
  t.is(released.keyType, 'RSA-HSM');
  const data = Buffer.from('released through a vault-shaped answer');
  const publicKey = (await vaultPublicKey(e.keyClient(), 'rsa'))!;
  t.true(verify('sha256', data, publicKey, sign('sha256', data, released.key)));
  t.is(createPublicKey(released.key).export({ format: 'jwk' }).e, 'AQAB');
});

test('a Managed-HSM-shaped release (kty RSA, e "AQAB") unwraps end to end', async (t) => {
  const { e, vault, client } = await setup(t, { vault: { flavour: 'managedhsm' } });
  await exportableKey(e, 'rsa', 'RSA-HSM');
  const seen = capture(vault);
  const released = await client().releaseKey(`${vault.url}/keys/rsa`);
  t.is(decode(seen.jws!).response.key.key.kty, 'RSA');
  t.is(decode(seen.jws!).response.key.key.e, 'AQAB');
  t.is(released.keyType, 'RSA');
  const data = Buffer.from('released through a Managed-HSM-shaped answer');
  t.true(verify('sha256', data, (await vaultPublicKey(e.keyClient(), 'rsa'))!, sign('sha256', data, released.key)));
});

test('a replayed genuinely signed answer for an old, since disabled version is refused and nothing is cached', async (t) => {
  const { e, vault, client } = await setup(t);
  await exportableKey(e, 'k', 'RSA-HSM');
  const keys = e.keyClient();
  const first = await keys.getKey('k');
  const old = `${vault.url}/keys/k/${first.properties.version}`;
  const seen = capture(vault);
  await client().releaseKey(old);
  const recorded = seen.jws!;
  await keys.rotateKey('k');
  await keys.updateKeyProperties('k', first.properties.version!, { enabled: false });

  // Someone on the path answers the next release of that version with the recorded answer.
  vault.plan = (r) => (isRelease(r) ? answer(recorded) : 'pass');
  const s = client();
  const error = await t.throwsAsync(s.releaseKey(old), {
    instanceOf: ReleaseResponseInvalidError,
    message: /not the nonce this release sent/,
  });
  t.is((error as ReleaseResponseInvalidError).check, 'binding');
  t.is((error as ReleaseResponseInvalidError).code, 'ERR_RELEASE_RESPONSE_INVALID');
  // Nothing was cached: the real vault's answer comes through next.
  vault.plan = () => 'pass';
  await t.throwsAsync(s.releaseKey(old), { instanceOf: KeyVersionUnavailableError });
});

test('a genuine answer that echoes no nonce is refused', async (t) => {
  const { e, vault, client } = await setup(t);
  await exportableKey(e, 'k', 'RSA-HSM');
  vault.plan = async (r) => {
    if (!isRelease(r)) return 'pass';
    const body = JSON.parse(r.body.toString('utf8')) as { target: string; enc: 'RSA_AES_KEY_WRAP_256' };
    // The same token and enc, released by the vault itself, but without the nonce.
    const genuine = await e.keyClient().releaseKey('k', body.target, { algorithm: body.enc });
    t.is(decode(genuine.value).request.nonce, undefined);
    return answer(genuine.value);
  };
  const error = await t.throwsAsync(client().releaseKey(`${vault.url}/keys/k`), {
    instanceOf: ReleaseResponseInvalidError,
    message: /request.nonce is missing/,
  });
  t.is((error as ReleaseResponseInvalidError).check, 'binding');
});

test('a genuine answer with our nonce but a versionless request.kid for another key name is refused', async (t) => {
  const { e, vault, client } = await setup(t);
  await exportableKey(e, 'mine', 'RSA-HSM');
  await exportableKey(e, 'other', 'RSA-HSM');
  vault.plan = async (r) => {
    if (!isRelease(r)) return 'pass';
    const body = JSON.parse(r.body.toString('utf8')) as {
      target: string;
      nonce: string;
      enc: 'RSA_AES_KEY_WRAP_256';
    };
    const genuine = await e.keyClient().releaseKey('other', body.target, { nonce: body.nonce, algorithm: body.enc });
    t.is(decode(genuine.value).request.kid, `${e.vaultUrl}/keys/other`);
    return answer(genuine.value);
  };
  const error = await t.throwsAsync(client().releaseKey(`${vault.url}/keys/mine`), {
    instanceOf: ReleaseResponseInvalidError,
    message: /not mine/,
  });
  t.is((error as ReleaseResponseInvalidError).check, 'binding');
});

test('release answers verify at the injected clock, and a pinned signer that does not match refuses them', async (t) => {
  const { e, vault, client } = await setup(t);
  await exportableKey(e, 'k', 'RSA-HSM');
  const id = `${vault.url}/keys/k`;
  const pinnedElsewhere = client({ releaseSignerPins: [{ spkiSha256: 'A'.repeat(43) + '=' }] });
  await t.throwsAsync(pinnedElsewhere.releaseKey(id), { instanceOf: ReleaseResponseInvalidError, message: /pinned/ });
  // Pinned to the emulator root's key: accepted.
  const rootSpki = createHash('sha256')
    .update(new X509Certificate(e.caPem).publicKey.export({ format: 'der', type: 'spki' }))
    .digest('base64');
  const seen = capture(vault);
  const pinned = client({ releaseSignerPins: [{ spkiSha256: rootSpki }] });
  t.is((await pinned.releaseKey(id)).keyType, 'RSA-HSM');
  const early = seen.jws!;

  // Three virtual years on. The vault signs with a signer issued on its clock; the client, given that clock,
  // accepts it although by the system clock it is not valid yet ...
  await e.clock.advance('P3Y');
  const later = client({ clock: () => e.clock.now() });
  t.is((await later.releaseKey(id)).keyType, 'RSA-HSM');
  const signer = (jws: string) =>
    new X509Certificate(
      Buffer.from((JSON.parse(Buffer.from(jws.split('.')[0]!, 'base64url').toString('utf8')) as { x5c: string[] }).x5c[0]!, 'base64'),
    );
  t.true(new Date(signer(seen.jws!).validFrom).getTime() > Date.now(), 'the signer is not valid yet by the system clock');
  // ... and refuses an answer signed by the first signer (valid 825 days), expired by that clock.
  vault.plan = (r) => (isRelease(r) ? answer(early) : 'pass');
  const error = await t.throwsAsync(client({ clock: () => e.clock.now() }).releaseKey(id), {
    instanceOf: ReleaseResponseInvalidError,
    message: /not valid at/,
  });
  t.is((error as ReleaseResponseInvalidError).check, 'chain');
});

test('a refusal is explained with key-version dates judged at the injected clock', async (t) => {
  const { e, client } = await setup(t);
  const hourMs = 3_600_000;
  await exportableKey(e, 'early', 'RSA-HSM');
  const keys = e.keyClient();
  const version = (await keys.getKey('early')).properties.version!;
  await keys.updateKeyProperties('early', version, { notBefore: new Date(Date.now() + hourMs) });
  const vaultId = (await keys.getKey('early')).id!;
  // The vault (its clock is now) refuses; at the system time the version is not yet valid ...
  const now = await t.throwsAsync(client().releaseKey(vaultId), { instanceOf: KeyVersionUnavailableError });
  t.is((now as KeyVersionUnavailableError).reason, 'not-yet-valid');
  // ... while a clock two hours on (the 8-hour token is still valid by it) sees a valid version, so the
  // refusal is not put down to its dates.
  const later = await t.throwsAsync(client({ clock: () => new Date(Date.now() + 2 * hourMs) }).releaseKey(vaultId));
  t.false(later instanceof KeyVersionUnavailableError, later?.message);
  t.true(later instanceof ReleaseDeniedError, later?.message);
});
