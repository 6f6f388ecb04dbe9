import { randomBytes } from 'node:crypto';
import { request } from 'node:https';
import { ManagedIdentityCredential } from '@azure/identity';
import { KeyClient } from '@azure/keyvault-keys';
import test from 'ava';
import { EmulatorCredential } from '../../../src/emulator/identity/credential.js';
import { policyBytes } from '../../helpers/vault-issuer.js';
import { rawRequest, startVault } from '../../helpers/vault-setup.js';

const AUTHORITY = 'https://sharedeus.eus.attest.azure.net';
const POLICY = { encodedPolicy: policyBytes(AUTHORITY) };

type ServiceError = { statusCode?: number; code?: string; message: string };

async function serviceError(t: import('ava').ExecutionContext, p: Promise<unknown>): Promise<ServiceError> {
  return (await t.throwsAsync(p)) as unknown as ServiceError;
}

const rawGet = (url: string, caPem: string, headers: Record<string, string> = {}) =>
  rawRequest(url, caPem, { headers });

const rawBody = (url: string, caPem: string, method: string, token: string, body: unknown) =>
  rawRequest(url, caPem, { method, token, body: JSON.stringify(body) });

test('an unauthenticated request gets 401 with the Key Vault challenge', async (t) => {
  const emu = await startVault(t);
  const res = await rawGet(`${emu.vaultUrl}/keys?api-version=7.4`, emu.caPem);
  t.is(res.status, 401);
  t.is(
    res.headers['www-authenticate'],
    `Bearer authorization="https://login.microsoftonline.com/${emu.tenantId}", resource="https://vault.azure.net"`,
  );
  t.deepEqual(JSON.parse(res.body), {
    error: { code: 'Unauthorized', message: 'AKV10000: Request is missing a Bearer or PoP token.' },
  });
  const forged = await rawGet(`${emu.vaultUrl}/keys?api-version=7.4`, emu.caPem, {
    authorization: 'Bearer abc.def.ghi',
  });
  t.is(forged.status, 401);
});

test('the TLS certificate and CA are marked as emulator certificates', async (t) => {
  const emu = await startVault(t);
  t.regex(emu.ca.subject, /cvm-skr emulator/);
  // Without the CA the connection is refused: the emulator CA is never trusted by default.
  await t.throwsAsync(
    new Promise((resolve, reject) => {
      const req = request(`${emu.vaultUrl}/keys`, resolve);
      req.on('error', reject);
      req.end();
    }),
  );
});

test('create keys of every type with their attributes, tags and key_ops', async (t) => {
  const emu = await startVault(t);
  const client = emu.keyClient();
  const rsa = await client.createRsaKey('rsa', {
    keySize: 3072,
    tags: { team: 'a' },
    keyOps: ['sign', 'verify'],
  });
  t.is(rsa.keyType, 'RSA');
  t.is(rsa.key?.n?.length, 384);
  t.deepEqual(rsa.keyOperations, ['sign', 'verify']);
  t.deepEqual(rsa.properties.tags, { team: 'a' });
  t.is(rsa.properties.recoveryLevel, 'Recoverable+Purgeable');
  t.is(rsa.properties.exportable, false);
  t.true(rsa.properties.enabled);
  t.truthy(rsa.properties.createdOn);
  t.regex(rsa.properties.version ?? '', /^[0-9a-f]{32}$/);

  const exp = new Date(Math.floor(emu.clock.nowMs() / 1000) * 1000 + 90 * 86400_000);
  const nbf = new Date(Math.floor(emu.clock.nowMs() / 1000) * 1000);
  const rsaHsm = await client.createRsaKey('rsa-hsm', {
    hsm: true,
    exportable: true,
    releasePolicy: POLICY,
    expiresOn: exp,
    notBefore: nbf,
  });
  t.is(rsaHsm.keyType, 'RSA-HSM');
  t.is(rsaHsm.key?.n?.length, 256);
  t.is(rsaHsm.properties.expiresOn?.getTime(), exp.getTime());
  t.is(rsaHsm.properties.notBefore?.getTime(), nbf.getTime());
  t.true(rsaHsm.properties.exportable);
  t.deepEqual(
    Buffer.from(rsaHsm.properties.releasePolicy?.encodedPolicy ?? []),
    Buffer.from(POLICY.encodedPolicy),
  );
  t.is(rsaHsm.properties.releasePolicy?.contentType, 'application/json; charset=utf-8');

  for (const curve of ['P-256', 'P-384', 'P-521'] as const) {
    const ec = await client.createEcKey(`ec-${curve}`, { curve, hsm: curve !== 'P-256' });
    t.is(ec.key?.crv, curve);
    t.is(ec.keyType, curve === 'P-256' ? 'EC' : 'EC-HSM');
    t.deepEqual(ec.keyOperations, ['sign', 'verify']);
  }
  const oct = await client.createOctKey('oct', {
    hsm: true,
    keySize: 256,
    exportable: true,
    releasePolicy: POLICY,
  });
  t.is(oct.keyType, 'oct-HSM');
  t.is(oct.key?.k, undefined, 'symmetric material is never returned');

  const bad = await serviceError(t, client.createRsaKey('bad-size', { keySize: 1024 }));
  t.is(bad.statusCode, 400);
  t.is(bad.code, 'BadParameter');
  const badName = await serviceError(t, client.createEcKey('bad_name!'));
  t.is(badName.statusCode, 400);
});

test('exportable and release policy rules answer the service codes', async (t) => {
  const emu = await startVault(t);
  const client = emu.keyClient();
  const e1004 = await serviceError(t, client.createRsaKey('a', { hsm: true, exportable: true }));
  t.is(e1004.statusCode, 400);
  t.is(e1004.code, 'BadParameter');
  t.regex(e1004.message, /^AKV\.SKR\.1004:/);

  const e1005 = await serviceError(t, client.createRsaKey('b', { hsm: true, releasePolicy: POLICY }));
  t.regex(e1005.message, /^AKV\.SKR\.1005:/);

  for (const data of [
    '{not json',
    '{"version":"1.0.0","anyOf":[]}',
    '{"version":"2.0","anyOf":[{"authority":"https://a","allOf":[{"claim":"c","equals":"x"}]}]}',
  ]) {
    const e1013 = await serviceError(
      t,
      client.createRsaKey('c', {
        hsm: true,
        exportable: true,
        releasePolicy: { encodedPolicy: Buffer.from(data) },
      }),
    );
    t.regex(e1013.message, /^AKV\.SKR\.1013:/, data);
  }

  await client.createRsaKey('imm', {
    hsm: true,
    exportable: true,
    releasePolicy: { ...POLICY, immutable: true },
  });
  const other = { encodedPolicy: policyBytes('https://other.attest.azure.net') };
  const e1020 = await serviceError(t, client.updateKeyProperties('imm', { releasePolicy: other }));
  t.regex(e1020.message, /^AKV\.SKR\.1020:/);
  // An immutable policy also stays with new versions created with another policy.
  const e1020b = await serviceError(
    t,
    client.createRsaKey('imm', { hsm: true, exportable: true, releasePolicy: other }),
  );
  t.regex(e1020b.message, /^AKV\.SKR\.1020:/);

  await client.createRsaKey('mutable', { hsm: true, exportable: true, releasePolicy: POLICY });
  const updated = await client.updateKeyProperties('mutable', { releasePolicy: other });
  t.deepEqual(
    Buffer.from(updated.properties.releasePolicy?.encodedPolicy ?? []),
    Buffer.from(other.encodedPolicy),
  );
  // The SDK cannot send `exportable` on update; the REST call can, and the service refuses the change.
  const { token } = await emu.credential.getToken('https://vault.azure.net/.default');
  const e1014 = await rawBody(`${updated.id}?api-version=7.4`, emu.caPem, 'PATCH', token, {
    attributes: { exportable: false },
  });
  t.is(e1014.status, 400);
  t.regex(JSON.parse(e1014.body).error.message, /^AKV\.SKR\.1014:/);

  // A later version of an exportable key keeps its policy without restating it.
  const v2 = await client.createRsaKey('mutable', { hsm: true, exportable: true });
  t.deepEqual(
    Buffer.from(v2.properties.releasePolicy?.encodedPolicy ?? []),
    Buffer.from(other.encodedPolicy),
  );
});

test('get with and without version, versions and key lists page with nextLink', async (t) => {
  const emu = await startVault(t);
  const client = emu.keyClient();
  const versions: string[] = [];
  for (let i = 0; i < 4; i++) versions.push((await client.createEcKey('multi')).properties.version!);
  const latest = await client.getKey('multi');
  t.is(latest.properties.version, versions[3]);
  const first = await client.getKey('multi', { version: versions[0]! });
  t.is(first.properties.version, versions[0]);
  const missing = await serviceError(t, client.getKey('multi', { version: 'f'.repeat(32) }));
  t.is(missing.statusCode, 404);
  t.is(missing.code, 'KeyNotFound');
  const nokey = await serviceError(t, client.getKey('nope'));
  t.is(nokey.statusCode, 404);

  const listed: string[] = [];
  for await (const page of client.listPropertiesOfKeyVersions('multi').byPage({ maxPageSize: 3 })) {
    t.true(page.length <= 3);
    listed.push(...page.map((p) => p.version!));
  }
  t.deepEqual(listed, versions);

  await Promise.all(
    Array.from({ length: 30 }, (_, i) => client.createEcKey(`many-${String(i).padStart(2, '0')}`)),
  );
  const pages: number[] = [];
  const names: string[] = [];
  for await (const page of client.listPropertiesOfKeys().byPage()) {
    pages.push(page.length);
    names.push(...page.map((p) => p.name));
  }
  t.deepEqual(pages, [25, 6]);
  t.is(new Set(names).size, 31);
  t.true(names.includes('multi'));
});

test('update properties: enabled, expiry, tags, key_ops', async (t) => {
  const emu = await startVault(t);
  const client = emu.keyClient();
  const k = await client.createRsaKey('u');
  const exp = new Date((Math.floor(emu.clock.nowMs() / 1000) + 86400 * 30) * 1000);
  const u = await client.updateKeyProperties('u', k.properties.version!, {
    enabled: false,
    expiresOn: exp,
    tags: { env: 'test' },
    keyOps: ['encrypt', 'decrypt'],
  });
  t.false(u.properties.enabled);
  t.is(u.properties.expiresOn?.getTime(), exp.getTime());
  t.deepEqual(u.properties.tags, { env: 'test' });
  t.deepEqual(u.keyOperations, ['encrypt', 'decrypt']);
  t.true((u.properties.updatedOn?.getTime() ?? 0) >= (k.properties.updatedOn?.getTime() ?? 0));
  // Without a version the current one is updated (trailing-slash path).
  const again = await client.updateKeyProperties('u', { enabled: true });
  t.true(again.properties.enabled);
  t.is(again.properties.version, k.properties.version);
});

test('delete, get deleted, recover and purge', async (t) => {
  const emu = await startVault(t);
  const client = emu.keyClient();
  await client.createEcKey('d');
  const poller = await client.beginDeleteKey('d', { intervalInMs: 10 });
  const deleted = await poller.pollUntilDone();
  t.is(deleted.properties.recoveryId, `${emu.vaultUrl}/deletedkeys/d`);
  t.truthy(deleted.properties.deletedOn);
  t.is((await serviceError(t, client.getKey('d'))).statusCode, 404);
  const conflict = await serviceError(t, client.createEcKey('d'));
  t.is(conflict.statusCode, 409);
  t.is((await client.getDeletedKey('d')).name, 'd');
  const recover = await client.beginRecoverDeletedKey('d', { intervalInMs: 10 });
  await recover.pollUntilDone();
  t.is((await client.getKey('d')).name, 'd');
  await (await client.beginDeleteKey('d', { intervalInMs: 10 })).pollUntilDone();
  await client.purgeDeletedKey('d');
  t.is((await serviceError(t, client.getDeletedKey('d'))).statusCode, 404);
  await client.createEcKey('d');
});

test('import RSA, EC and oct keys', async (t) => {
  const emu = await startVault(t);
  const client = emu.keyClient();
  const { generateKeyPairSync } = await import('node:crypto');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const imported = await client.importKey('imp-rsa', {
    kty: 'RSA',
    n: Buffer.from(rsa.n!, 'base64url'),
    e: Buffer.from(rsa.e!, 'base64url'),
    d: Buffer.from(rsa.d!, 'base64url'),
    p: Buffer.from(rsa.p!, 'base64url'),
    q: Buffer.from(rsa.q!, 'base64url'),
    dp: Buffer.from(rsa.dp!, 'base64url'),
    dq: Buffer.from(rsa.dq!, 'base64url'),
    qi: Buffer.from(rsa.qi!, 'base64url'),
  });
  t.is(Buffer.from(imported.key!.n!).toString('base64url'), rsa.n as string);
  t.is(imported.key?.d, undefined, 'private parts never come back');
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const iec = await client.importKey(
    'imp-ec',
    {
      kty: 'EC-HSM',
      crv: 'P-256',
      x: Buffer.from(ec.x!, 'base64url'),
      y: Buffer.from(ec.y!, 'base64url'),
      d: Buffer.from(ec.d!, 'base64url'),
    },
    { hardwareProtected: true },
  );
  t.is(iec.keyType, 'EC-HSM');
  const pubOnly = await serviceError(
    t,
    client.importKey('imp-pub', {
      kty: 'EC',
      crv: 'P-256',
      x: Buffer.from(ec.x!, 'base64url'),
      y: Buffer.from(ec.y!, 'base64url'),
    }),
  );
  t.is(pubOnly.statusCode, 400);
  const oct = await client.importKey(
    'imp-oct',
    { kty: 'oct-HSM', k: randomBytes(16) },
    { hardwareProtected: true },
  );
  t.is(oct.keyType, 'oct-HSM');
});

test('permissions are enforced per principal and operation', async (t) => {
  const emu = await startVault(t, {
    principals: [
      { id: 'admin', permissions: 'all' },
      { id: 'reader', permissions: ['get', 'list'] },
      { id: 'nobody', permissions: [] },
    ],
  });
  await emu.keyClient().createEcKey('p');
  const reader = emu.keyClient({ clientId: 'reader' });
  t.is((await reader.getKey('p')).name, 'p');
  const createErr = await serviceError(t, reader.createEcKey('q'));
  t.is(createErr.statusCode, 403);
  t.regex(createErr.message, /does not have keys create permission/);
  const nobody = emu.keyClient({ clientId: 'nobody' });
  t.is((await serviceError(t, nobody.getKey('p'))).statusCode, 403);
  const unknown = new EmulatorCredential({
    tokenUrl: emu.tokenUrl,
    identityHeader: emu.identityHeader,
    clientId: 'ghost',
  });
  await t.throwsAsync(unknown.getToken('https://vault.azure.net/.default'), {
    code: 'ERR_EMULATOR_CREDENTIAL',
  });
  const wrongSecret = new EmulatorCredential({ tokenUrl: emu.tokenUrl, identityHeader: 'wrong' });
  await t.throwsAsync(wrongSecret.getToken('https://vault.azure.net/.default'), {
    message: /X-IDENTITY-HEADER/,
  });
});

test('ManagedIdentityCredential works against the token endpoint (IDENTITY_ENDPOINT / IDENTITY_HEADER)', async (t) => {
  const emu = await startVault(t);
  const saved = { endpoint: process.env.IDENTITY_ENDPOINT, header: process.env.IDENTITY_HEADER };
  Object.assign(process.env, emu.environment());
  t.teardown(() => {
    for (const [k, v] of [
      ['IDENTITY_ENDPOINT', saved.endpoint],
      ['IDENTITY_HEADER', saved.header],
    ] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  const credential = new ManagedIdentityCredential();
  const client = new KeyClient(emu.vaultUrl, credential, {
    disableChallengeResourceVerification: true,
    tlsOptions: { ca: emu.caPem },
  });
  const k = await client.createEcKey('via-msi');
  t.is(k.name, 'via-msi');
});

test('a soft-deleted key is purged by the system after the retention period', async (t) => {
  const emu = await startVault(t, { clock: { frozen: true } });
  const client = emu.keyClient();
  await client.createEcKey('retained');
  await (await client.beginDeleteKey('retained', { intervalInMs: 10 })).pollUntilDone();
  await emu.clock.advance('P89D');
  t.is((await client.getDeletedKey('retained')).name, 'retained');
  await emu.clock.advance('P1D');
  const gone = await serviceError(t, client.getDeletedKey('retained'));
  t.is(gone.statusCode, 404);
  t.is((await client.createEcKey('retained')).name, 'retained', 'the name is free again');
});
