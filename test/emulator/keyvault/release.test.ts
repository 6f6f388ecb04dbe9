import { createPrivateKey, randomBytes } from 'node:crypto';
import type { KeyClient, KeyExportEncryptionAlgorithm } from '@azure/keyvault-keys';
import test from 'ava';
import { RELEASE_DENIED_MESSAGE } from '../../../src/emulator/keyvault/vault-error.js';
import { defaultConditions, policyBytes, type TestIssuer } from '../../helpers/vault-issuer.js';
import { startVaultWithIssuer } from '../../helpers/vault-setup.js';
import { unwrapKeyHsm, verifyReleaseJws } from '../../helpers/vault-unwrap.js';

const ENCS: KeyExportEncryptionAlgorithm[] = [
  'CKM_RSA_AES_KEY_WRAP',
  'RSA_AES_KEY_WRAP_256',
  'RSA_AES_KEY_WRAP_384',
];

function b64u(bytes: Uint8Array | undefined): string {
  return Buffer.from(bytes ?? new Uint8Array()).toString('base64url');
}

async function expectDenied(t: import('ava').ExecutionContext, p: Promise<unknown>) {
  const err = await t.throwsAsync(p);
  const e = err as unknown as { statusCode?: number; code?: string; message: string };
  t.is(e.statusCode, 403);
  t.is(e.code, 'Forbidden');
  t.true(e.message.includes(RELEASE_DENIED_MESSAGE), e.message);
}

async function releaseAndUnwrap(
  t: import('ava').ExecutionContext,
  client: KeyClient,
  issuer: TestIssuer,
  caPem: string,
  name: string,
  enc: KeyExportEncryptionAlgorithm | undefined,
  version?: string,
) {
  const nonce = randomBytes(8).toString('hex');
  const result = await client.releaseKey(name, await issuer.token(), {
    nonce,
    ...(enc ? { algorithm: enc } : {}),
    ...(version ? { version } : {}),
  });
  const verified = await verifyReleaseJws(result.value, caPem);
  t.is(verified.header.alg, 'RS256');
  t.truthy(verified.header.kid);
  t.truthy(verified.header.x5t);
  t.is(verified.payload.request.enc, enc ?? 'CKM_RSA_AES_KEY_WRAP');
  t.is(verified.payload.request.nonce, nonce);
  t.is(verified.envelope.schema_version, '1.0');
  t.is(verified.envelope.header.alg, 'dir');
  t.is(verified.envelope.header.kid, issuer.transferKey.kid);
  t.is(verified.envelope.header.enc as string, enc ?? 'CKM_RSA_AES_KEY_WRAP');
  t.is(verified.payload.response.key.attributes.exportable, true);
  return { material: unwrapKeyHsm(verified.envelope, issuer.transferKey.privateKey), verified };
}

test('RSA-HSM, EC-HSM and oct-HSM keys release and unwrap to their own material for every enc', async (t) => {
  const { emu, issuer } = await startVaultWithIssuer(t);
  const client = emu.keyClient();
  const releasePolicy = { encodedPolicy: policyBytes(issuer.url) };
  const rsa = await client.createRsaKey('rsa', { hsm: true, keySize: 2048, exportable: true, releasePolicy });
  const ec = await client.createEcKey('ec', { hsm: true, curve: 'P-384', exportable: true, releasePolicy });
  const octBytes = randomBytes(32);
  const oct = await client.importKey(
    'oct',
    { kty: 'oct-HSM', k: octBytes, keyOps: ['wrapKey', 'unwrapKey'] },
    { exportable: true, releasePolicy, hardwareProtected: true },
  );
  t.is(oct.keyType, 'oct-HSM');
  for (const enc of ENCS) {
    const r = await releaseAndUnwrap(t, client, issuer, emu.caPem, 'rsa', enc);
    // A versionless release: request.kid has no version (test/fixtures/real-release/*.jws), the key's has.
    t.is(r.verified.payload.request.kid, `${emu.vaultUrl}/keys/rsa`);
    t.is(r.verified.payload.response.key.key.kid, rsa.id);
    const rsaJwk = createPrivateKey({ key: r.material, format: 'der', type: 'pkcs8' }).export({
      format: 'jwk',
    });
    t.is(rsaJwk.n, b64u(rsa.key?.n), `RSA modulus after ${enc}`);
    t.is(r.verified.payload.response.key.key.n, b64u(rsa.key?.n));

    const e = await releaseAndUnwrap(t, client, issuer, emu.caPem, 'ec', enc);
    const ecJwk = createPrivateKey({ key: e.material, format: 'der', type: 'pkcs8' }).export({
      format: 'jwk',
    });
    t.is(ecJwk.crv, 'P-384');
    t.is(ecJwk.x, b64u(ec.key?.x), `EC point after ${enc}`);
    t.is(ecJwk.y, b64u(ec.key?.y));

    const o = await releaseAndUnwrap(t, client, issuer, emu.caPem, 'oct', enc);
    t.true(o.material.equals(octBytes), `oct bytes after ${enc}`);
  }
  // No enc: the service default.
  const d = await releaseAndUnwrap(t, client, issuer, emu.caPem, 'oct', undefined);
  t.true(d.material.equals(octBytes));
});

test('release of a named older version wraps that version, the versionless call wraps the newest', async (t) => {
  const { emu, issuer } = await startVaultWithIssuer(t);
  const client = emu.keyClient();
  const first = await client.createEcKey('k', {
    hsm: true,
    exportable: true,
    releasePolicy: { encodedPolicy: policyBytes(issuer.url) },
  });
  const second = await client.rotateKey('k');
  t.not(first.properties.version, second.properties.version);
  const old = await releaseAndUnwrap(
    t,
    client,
    issuer,
    emu.caPem,
    'k',
    'RSA_AES_KEY_WRAP_256',
    first.properties.version,
  );
  t.is(old.verified.payload.request.kid, first.id);
  t.is(
    createPrivateKey({ key: old.material, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' }).x,
    b64u(first.key?.x),
  );
  const cur = await releaseAndUnwrap(t, client, issuer, emu.caPem, 'k', 'RSA_AES_KEY_WRAP_256');
  t.is(cur.verified.payload.request.kid, `${emu.vaultUrl}/keys/k`);
  t.is(cur.verified.payload.response.key.key.kid, second.id);
});

test('authority matches the issuer with or without a trailing slash', async (t) => {
  const { emu, issuer } = await startVaultWithIssuer(t);
  const client = emu.keyClient();
  await client.createEcKey('slash', {
    hsm: true,
    exportable: true,
    releasePolicy: { encodedPolicy: policyBytes(`${issuer.url}/`) },
  });
  const r = await client.releaseKey('slash', await issuer.token());
  t.truthy(r.value);
});

test('full grammar through the vault: nested anyOf/allOf, every operator, dotted claims, boolean as string', async (t) => {
  const { emu, issuer } = await startVaultWithIssuer(t);
  const client = emu.keyClient();
  const conditions = [
    { claim: 'x-ms-isolation-tee.x-ms-attestation-type', equals: 'sevsnpvm' },
    { claim: 'x-ms-sevsnpvm-is-debuggable', equals: 'false' },
    { claim: 'x-ms-sevsnpvm-guestsvn', greaterOrEquals: 7 },
    { claim: 'x-ms-sevsnpvm-guestsvn', greater: 6 },
    { claim: 'x-ms-sevsnpvm-guestsvn', lessOrEquals: '7' },
    { claim: 'x-ms-sevsnpvm-vmpl', less: 1 },
    { claim: 'x-ms-compliance-status', notEquals: 'azure-compliant-uvm' },
    { claim: 'x-ms-ver', exists: true },
    {
      anyOf: [
        { claim: 'x-ms-attestation-type', equals: 'tdxvm' },
        {
          allOf: [
            { claim: 'x-ms-sevsnpvm-vmpl', equals: 0 },
            { claim: 'no-such-claim', exists: false },
          ],
        },
      ],
    },
  ];
  await client.createRsaKey('grammar', {
    hsm: true,
    exportable: true,
    releasePolicy: { encodedPolicy: policyBytes(issuer.url, conditions) },
  });
  t.truthy((await client.releaseKey('grammar', await issuer.token())).value);
  // One failing leaf anywhere in the allOf refuses the release.
  await expectDenied(t, client.releaseKey('grammar', await issuer.token({ 'x-ms-sevsnpvm-guestsvn': 6 })));
  await expectDenied(
    t,
    client.releaseKey('grammar', await issuer.token({ 'x-ms-sevsnpvm-is-debuggable': true })),
  );
  await expectDenied(t, client.releaseKey('grammar', await issuer.token({ 'x-ms-sevsnpvm-vmpl': 1 })));
  await expectDenied(t, client.releaseKey('grammar', await issuer.token({ 'no-such-claim': 'present' })));
  const last = emu.releaseDecisions().at(-1)!;
  t.false(last.allowed);
  t.is(last.reason, 'release policy is not satisfied');
  const failed = last.evaluation!.clauses.filter((c) => c.kind === 'claim' && !c.passed).map((c) => c.claim);
  // The anyOf's first branch fails too; it is reported though its sibling decides the anyOf.
  t.deepEqual(failed, ['x-ms-attestation-type', 'no-such-claim']);
});

test('refusals: failing claim, missing claim, wrong authority, expired token, untrusted issuer, forged signature', async (t) => {
  const { emu, issuer } = await startVaultWithIssuer(t);
  const client = emu.keyClient();
  const releasePolicy = { encodedPolicy: policyBytes(issuer.url) };
  await client.createEcKey('k', { hsm: true, exportable: true, releasePolicy });
  await client.createEcKey('other-authority', {
    hsm: true,
    exportable: true,
    releasePolicy: {
      encodedPolicy: policyBytes('https://sharedeus.eus.attest.azure.net', defaultConditions()),
    },
  });

  await expectDenied(t, client.releaseKey('k', await issuer.token({ 'x-ms-attestation-type': 'azurevm' })));
  await expectDenied(t, client.releaseKey('k', await issuer.token({ 'x-ms-compliance-status': null })));
  await expectDenied(t, client.releaseKey('other-authority', await issuer.token()));
  const hourAgo = Math.floor(emu.clock.nowMs() / 1000) - 7200;
  await expectDenied(
    t,
    client.releaseKey('k', await issuer.token({}, { iat: hourAgo, lifetimeSeconds: 3600 })),
  );
  await expectDenied(t, client.releaseKey('k', await issuer.token({ 'x-ms-runtime': null })));

  const { generateKeyPairSync } = await import('node:crypto');
  const forger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  await expectDenied(t, client.releaseKey('k', await issuer.token({}, { key: forger })));

  const reasons = emu.releaseDecisions().map((d) => d.reason);
  t.deepEqual(reasons, [
    'release policy is not satisfied',
    'release policy is not satisfied',
    'release policy is not satisfied',
    'token verification failed (ERR_JWT_EXPIRED)',
    'token has no x-ms-runtime.keys',
    'token verification failed (ERR_JWS_SIGNATURE_VERIFICATION_FAILED)',
  ]);
  const wrongAuthority = emu.releaseDecisions()[2]!.evaluation!.clauses[0]!;
  t.is(wrongAuthority.kind, 'authority');
  t.false(wrongAuthority.passed);

  // The issuer stops being trusted: the same good token is refused.
  emu.untrustIssuer(issuer.url);
  await expectDenied(t, client.releaseKey('k', await issuer.token()));
  t.is(emu.releaseDecisions().at(-1)!.reason, 'token issuer is not trusted by this vault');
});

test('a principal without the release permission gets 403 AccessDenied; non-exportable keys do not release', async (t) => {
  const { emu, issuer } = await startVaultWithIssuer(t, {
    principals: [
      { id: 'admin', permissions: 'all' },
      { id: 'reader', permissions: ['get', 'list'] },
    ],
  });
  const admin = emu.keyClient();
  await admin.createEcKey('k', {
    hsm: true,
    exportable: true,
    releasePolicy: { encodedPolicy: policyBytes(issuer.url) },
  });
  await admin.createEcKey('plain', { hsm: true });
  const reader = emu.keyClient({ clientId: 'reader' });
  t.is((await reader.getKey('k')).name, 'k');
  const err = (await t.throwsAsync(reader.releaseKey('k', await issuer.token()))) as unknown as {
    statusCode: number;
    code: string;
    message: string;
  };
  t.is(err.statusCode, 403);
  t.is(err.code, 'Forbidden');
  t.regex(err.message, /does not have keys release permission/);
  const notExportable = (await t.throwsAsync(admin.releaseKey('plain', await issuer.token()))) as unknown as {
    statusCode: number;
  };
  t.is(notExportable.statusCode, 400);
});

test('issuer keys are fetched through OpenID metadata once and reused', async (t) => {
  const { emu, issuer } = await startVaultWithIssuer(t);
  const client = emu.keyClient();
  await client.createEcKey('k', {
    hsm: true,
    exportable: true,
    releasePolicy: { encodedPolicy: policyBytes(issuer.url) },
  });
  await client.releaseKey('k', await issuer.token());
  await client.releaseKey('k', await issuer.token());
  t.is(issuer.jwksFetches(), 1);
});

test('an MAA-shaped issuer (x5c-only JWKS at /certs, no OpenID metadata) is accepted; a new kid refetches once', async (t) => {
  const { emu, issuer } = await startVaultWithIssuer(t, {}, { maaShape: true });
  const client = emu.keyClient();
  await client.createEcKey('k', {
    hsm: true,
    exportable: true,
    releasePolicy: { encodedPolicy: policyBytes(issuer.url) },
  });
  t.truthy((await client.releaseKey('k', await issuer.token())).value);
  t.is(issuer.jwksFetches(), 1);
  await issuer.rotateSigningKey();
  t.truthy((await client.releaseKey('k', await issuer.token())).value);
  t.is(issuer.jwksFetches(), 2, 'the unknown kid made the vault fetch the keys again');
  t.truthy((await client.releaseKey('k', await issuer.token())).value);
  t.is(issuer.jwksFetches(), 2);
});
