/**
 * The emulator's release answers against the real ones in test/fixtures/real-release/ (Azure/azure-sdk-for-js
 * sdk/keyvault/keyvault-keys/recordings/, paths and commits in sources.json): the same header fields in the
 * same order, the same payload field names, nesting and JSON types, and the same per-flavour values (`kid`
 * derivation, `kty`, `e`, `release_policy` fields, versionless `request.kid`, a three-certificate chain whose
 * leaf is a TLS server certificate).
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import test from 'ava';
import type { VaultFlavour } from '../../../src/emulator/keyvault/index.js';
import { verifyReleaseResponse } from '../../../src/keyvault/release-response.js';
import { policyBytes } from '../../helpers/vault-issuer.js';
import { startVaultWithIssuer } from '../../helpers/vault-setup.js';

const fixtures = new URL('../../fixtures/real-release/', import.meta.url);
const decode = (compact: string) => {
  const [h, p] = compact.split('.');
  return {
    header: JSON.parse(Buffer.from(h!, 'base64url').toString('utf8')) as Record<string, unknown>,
    payload: JSON.parse(Buffer.from(p!, 'base64url').toString('utf8')) as Record<string, unknown>,
  };
};
const real = (file: string) => decode(readFileSync(new URL(file, fixtures), 'utf8').trim());

/** Field names in order, nesting and JSON types; values left out. */
function shape(value: unknown): unknown {
  if (Array.isArray(value)) return [...new Set(value.map((v) => JSON.stringify(shape(v))))].map((s) => JSON.parse(s));
  if (value === null) return 'null';
  if (typeof value === 'object') {
    return Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, shape(v)]);
  }
  return typeof value;
}

const KU_TLS = ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'];

for (const [flavour, file] of [
  ['vault', 'kv2022-create-release.jws'],
  ['managedhsm', 'mhsm-create-release.jws'],
] as [VaultFlavour, string][]) {
  test(`a ${flavour} release answer of the emulator has the shape of the real ${file}`, async (t) => {
    const recorded = real(file);
    const { emu, issuer } = await startVaultWithIssuer(t, { flavour });
    const client = emu.keyClient();
    // As the recorded calls did: an exportable RSA-HSM key with encrypt/decrypt, released without a version,
    // without a nonce and without enc (the service default CKM_RSA_AES_KEY_WRAP).
    await client.createRsaKey('exportkey', {
      hsm: true,
      keySize: 2048,
      keyOps: ['encrypt', 'decrypt'],
      exportable: true,
      releasePolicy: { encodedPolicy: policyBytes(issuer.url) },
    });
    const answer = await client.releaseKey('exportkey', await issuer.token());
    const emulated = decode(answer.value);

    // Header: the same fields in the same order, values derived from x5c[0] as the real service derives them.
    t.deepEqual(Object.keys(emulated.header), Object.keys(recorded.header));
    t.deepEqual(shape(emulated.header), shape(recorded.header));
    const x5c = emulated.header.x5c as string[];
    t.is(x5c.length, (recorded.header.x5c as string[]).length);
    const leafDer = Buffer.from(x5c[0]!, 'base64');
    t.is(emulated.header['x5t#S256'], createHash('sha256').update(leafDer).digest('base64url'));
    t.is(
      emulated.header.kid,
      flavour === 'managedhsm'
        ? emulated.header['x5t#S256']
        : createHash('sha1').update(leafDer).digest('hex').toUpperCase(),
    );

    // Payload: the same names, nesting and types (key_hsm's inner field order is not compared).
    t.deepEqual(shape(emulated.payload), shape(recorded.payload));
    const request = emulated.payload.request as Record<string, string>;
    const key = (emulated.payload.response as { key: Record<string, Record<string, unknown>> }).key;
    const recordedKey = (recorded.payload.response as { key: Record<string, Record<string, unknown>> }).key;
    t.is(request.kid, `${emu.vaultUrl}/keys/exportkey`);
    t.is(request.enc, 'CKM_RSA_AES_KEY_WRAP');
    t.regex(key.key!.kid as string, /\/keys\/exportkey\/[0-9a-f]{32}$/);
    t.is(key.key!.kty, recordedKey.key!.kty);
    t.is(key.key!.e, recordedKey.key!.e);
    t.deepEqual(Object.keys(key.release_policy!), Object.keys(recordedKey.release_policy!));

    // The certificates: the leaf is a TLS server certificate like the real ones, under an intermediate CA.
    const [leaf, intermediate, root] = x5c.map((b64) => new X509Certificate(Buffer.from(b64, 'base64')));
    const recordedLeaf = new X509Certificate(Buffer.from((recorded.header.x5c as string[])[0]!, 'base64'));
    t.false(leaf!.ca);
    t.true(intermediate!.ca);
    t.true(root!.raw.equals(new X509Certificate(emu.caPem).raw));
    t.deepEqual([...(leaf!.keyUsage ?? [])].sort(), KU_TLS); // node's keyUsage lists the extended key usages
    t.deepEqual([...(recordedLeaf.keyUsage ?? [])].sort(), KU_TLS);
    t.is(leaf!.publicKey.asymmetricKeyType, 'rsa');

    // And the library's verifier accepts it for this vault.
    const verified = await verifyReleaseResponse(answer.value, { vaultUrl: emu.vaultUrl, trustedRoots: [emu.caPem] });
    t.is(verified.payload.request.nonce, undefined);

    // A nonce sent is echoed in request.nonce (as the recorded Managed HSM answer below shows).
    const withNonce = decode(
      (await client.releaseKey('exportkey', await issuer.token(), { nonce: 'bm9uY2UtMQ' })).value,
    );
    t.is((withNonce.payload.request as Record<string, unknown>).nonce, 'bm9uY2UtMQ');
  });
}

// A real release that sent a nonce: Managed HSM, 2021, api-version 7.3-preview (the excerpt and its provenance
// are in test/fixtures/real-release/mhsm-import-release-nonce.json). The signed answer's `request` member echoes
// the nonce, the enc and the versioned kid the call named, in this field order. The library refuses an answer
// whose echo differs from what it sent (test/keyvault/release-response.test.ts), so this is the fact every
// release depends on; the emulated vault answers the same way.
test('a release sent with a nonce and a version: the signed request member echoes both, as in a real Managed HSM answer', async (t) => {
  const excerpt = JSON.parse(readFileSync(new URL('mhsm-import-release-nonce.json', fixtures), 'utf8')) as {
    releaseRequestBody: { nonce: string; enc: string };
    payloadPrefix: string;
  };
  // The prefix ends inside the payload's JSON, right after the complete `request` member.
  const decodedPrefix = Buffer.from(excerpt.payloadPrefix, 'base64url').toString('utf8');
  const recordedRequest = (JSON.parse(decodedPrefix.replace(/,"$/, '}')) as { request: Record<string, string> })
    .request;
  t.is(recordedRequest.nonce, excerpt.releaseRequestBody.nonce, 'the real service echoes the nonce it was sent');
  t.is(recordedRequest.enc, excerpt.releaseRequestBody.enc);
  t.regex(recordedRequest.kid!, /\/keys\/importreleasekey\d+\/[0-9a-f]{32}$/, 'versioned, as the call was');

  const { emu, issuer } = await startVaultWithIssuer(t, { flavour: 'managedhsm' });
  const client = emu.keyClient();
  const created = await client.createRsaKey('importreleasekey', {
    hsm: true,
    exportable: true,
    releasePolicy: { encodedPolicy: policyBytes(issuer.url) },
  });
  const answer = await client.releaseKey('importreleasekey', await issuer.token(), {
    version: created.properties.version!,
    nonce: excerpt.releaseRequestBody.nonce,
    algorithm: excerpt.releaseRequestBody.enc as 'RSA_AES_KEY_WRAP_256',
  });
  const request = decode(answer.value).payload.request as Record<string, string>;
  t.deepEqual(Object.keys(request), Object.keys(recordedRequest));
  t.is(request.nonce, recordedRequest.nonce);
  t.is(request.enc, recordedRequest.enc);
  t.is(request.kid, created.id);
});
