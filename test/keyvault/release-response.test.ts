import { createHash, createPrivateKey, webcrypto, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import test from 'ava';
import { CompactSign } from 'jose';
import { ReleaseResponseInvalidError } from '../../src/errors.js';
import { verifyReleaseResponse } from '../../src/keyvault/release-response.js';
import { x509 } from '../../src/emulator/x509.js';
import { type TestCert, testCa, testLeaf } from '../helpers/pki.js';

const vaultUrl = 'https://myvault.vault.azure.net';

const payload = {
  request: { 'api-version': '7.4', enc: 'RSA_AES_KEY_WRAP_256', kid: `${vaultUrl}/keys/k` },
  response: {
    key: {
      key: { kid: `${vaultUrl}/keys/k/0123`, kty: 'oct-HSM', key_ops: ['encrypt'], key_hsm: 'eyJ9' },
      attributes: { enabled: true, exportable: true },
      release_policy: { data: 'e30', immutable: false },
    },
  },
};

async function privateKeyOf(signer: TestCert) {
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', signer.keys.privateKey);
  return createPrivateKey({ key: Buffer.from(pkcs8), format: 'der', type: 'pkcs8' });
}

async function jws(
  signer: TestCert,
  chain: TestCert[],
  body: unknown = payload,
  alg = 'RS256',
  extraHeader: Record<string, unknown> = {},
) {
  return new CompactSign(Buffer.from(JSON.stringify(body)))
    .setProtectedHeader({ alg, x5c: chain.map((c) => c.b64), ...extraHeader })
    .sign(await privateKeyOf(signer));
}

const pki = (async () => {
  const root = await testCa('vault test root');
  const other = await testCa('someone else');
  const leaf = await testLeaf(root, { dns: ['myvault.vault.azure.net'] });
  const suffixLeaf = await testLeaf(root, { dns: ['vault.azure.net'] });
  const wildcard = await testLeaf(root, { dns: ['*.vault.azure.net'] });
  const wrongHost = await testLeaf(root, { dns: ['othervault.vault.azure.net'] });
  const ipLeaf = await testLeaf(root, { ip: ['127.0.0.1'] });
  const expired = await testLeaf(root, {
    dns: ['myvault.vault.azure.net'],
    notBefore: new Date(Date.now() - 10 * 86_400_000),
    notAfter: new Date(Date.now() - 86_400_000),
  });
  const intermediate = await testLeaf(root, { cn: 'intermediate', ca: true });
  const underIntermediate = await testLeaf(intermediate, { dns: ['myvault.vault.azure.net'] });
  const notCa = await testLeaf(root, { cn: 'not a ca', ca: false });
  const underNotCa = await testLeaf(notCa, { dns: ['myvault.vault.azure.net'] });
  return {
    root,
    other,
    leaf,
    suffixLeaf,
    wildcard,
    wrongHost,
    ipLeaf,
    expired,
    intermediate,
    underIntermediate,
    notCa,
    underNotCa,
  };
})();

test('a release answer signed by a certificate chained to a trusted root and naming the vault verifies', async (t) => {
  const p = await pki;
  const trustedRoots = [p.root.pem];
  const verified = await verifyReleaseResponse(await jws(p.leaf, [p.leaf, p.root]), {
    vaultUrl,
    trustedRoots,
  });
  t.is(verified.payload.request.enc, 'RSA_AES_KEY_WRAP_256');
  t.is(verified.payload.response.key.key.kty, 'oct-HSM');
  t.deepEqual(verified.payload.response.key.release_policy, { data: 'e30', immutable: false });
  // The chain may stop below the root, use a wildcard, or pass an intermediate.
  await t.notThrowsAsync(verifyReleaseResponse(await jws(p.leaf, [p.leaf]), { vaultUrl, trustedRoots }));
  // A certificate for the bare DNS suffix is not one for the vault: the real leaves name `*.vault.azure.net`
  // (test/fixtures/real-release/kv*.jws), so no suffix rule is needed.
  await t.throwsAsync(
    verifyReleaseResponse(await jws(p.suffixLeaf, [p.suffixLeaf]), { vaultUrl, trustedRoots }),
    { instanceOf: ReleaseResponseInvalidError, message: /does not name the vault host/ },
  );
  await t.notThrowsAsync(
    verifyReleaseResponse(await jws(p.wildcard, [p.wildcard]), { vaultUrl, trustedRoots }),
  );
  await t.notThrowsAsync(
    verifyReleaseResponse(await jws(p.underIntermediate, [p.underIntermediate, p.intermediate]), {
      vaultUrl,
      trustedRoots,
    }),
  );
  await t.notThrowsAsync(
    verifyReleaseResponse(await jws(p.ipLeaf, [p.ipLeaf]), {
      vaultUrl: 'https://127.0.0.1:8443',
      trustedRoots,
    }),
  );
});

test('tampered, untrusted, misnamed, expired or oddly signed answers are refused with a typed error', async (t) => {
  const p = await pki;
  const trustedRoots = [p.root.pem];
  const reject = (promise: Promise<unknown>, message: RegExp) =>
    t.throwsAsync(promise, { instanceOf: ReleaseResponseInvalidError, message });

  const good = await jws(p.leaf, [p.leaf, p.root]);
  const [h, body, sig] = good.split('.');
  const tamperedBody = Buffer.from(
    JSON.stringify({ ...payload, request: { ...payload.request, kid: 'x' } }),
  ).toString('base64url');
  await reject(verifyReleaseResponse(`${h}.${tamperedBody}.${sig}`, { vaultUrl, trustedRoots }), /signature/);
  const flipped = Buffer.from(sig!, 'base64url');
  flipped[0]! ^= 1;
  await reject(
    verifyReleaseResponse(`${h}.${body}.${flipped.toString('base64url')}`, { vaultUrl, trustedRoots }),
    /signature/,
  );
  await reject(verifyReleaseResponse(good, { vaultUrl, trustedRoots: [p.other.pem] }), /not a trusted root/);
  await reject(verifyReleaseResponse(good, { vaultUrl }), /not a trusted root/); // system roots by default
  await reject(
    verifyReleaseResponse(good, { vaultUrl: 'https://evil.vault.azure.net', trustedRoots }),
    /does not name/,
  );
  await reject(
    verifyReleaseResponse(await jws(p.wrongHost, [p.wrongHost]), { vaultUrl, trustedRoots }),
    /does not name the vault host myvault/,
  );
  await reject(
    verifyReleaseResponse(await jws(p.expired, [p.expired]), { vaultUrl, trustedRoots }),
    /not valid at/,
  );
  await reject(
    verifyReleaseResponse(good, { vaultUrl, trustedRoots, now: new Date(Date.now() + 60 * 86_400_000) }),
    /not valid at/,
  );
  await reject(
    verifyReleaseResponse(await jws(p.underNotCa, [p.underNotCa, p.notCa]), { vaultUrl, trustedRoots }),
    /not a CA/,
  );
  await reject(
    verifyReleaseResponse(await jws(p.leaf, [p.leaf], payload, 'PS256'), { vaultUrl, trustedRoots }),
    /not RS256/,
  );
  const none = `${Buffer.from(JSON.stringify({ alg: 'none', x5c: [p.leaf.b64] })).toString('base64url')}.${body}.`;
  await reject(verifyReleaseResponse(none, { vaultUrl, trustedRoots }), /not RS256/);
  const noChain = `${Buffer.from(JSON.stringify({ alg: 'RS256' })).toString('base64url')}.${body}.${sig}`;
  await reject(verifyReleaseResponse(noChain, { vaultUrl, trustedRoots }), /x5c/);
  await reject(verifyReleaseResponse('not a jws', { vaultUrl, trustedRoots }), /compact JWS/);
  const badEnc = { ...payload, request: { ...payload.request, enc: 'A256GCM' } };
  await reject(
    verifyReleaseResponse(await jws(p.leaf, [p.leaf], badEnc), { vaultUrl, trustedRoots }),
    /release algorithm/,
  );
  const noHsm = structuredClone(payload) as { response: { key: { key: Record<string, unknown> } } };
  delete noHsm.response.key.key.key_hsm;
  await reject(
    verifyReleaseResponse(await jws(p.leaf, [p.leaf], noHsm), { vaultUrl, trustedRoots }),
    /key_hsm/,
  );
});

// --- real answers (test/fixtures/real-release/, from Azure/azure-sdk-for-js sdk/keyvault/keyvault-keys/recordings/;
// exact paths and commits in sources.json) ---

const fixtures = new URL('../fixtures/real-release/', import.meta.url);
const sources = JSON.parse(readFileSync(new URL('sources.json', fixtures), 'utf8')) as Record<
  string,
  { file: string; recordedAt: string; hostNamedByCertificate: string; path: string; commit: string }
>;
const realAnswer = (name: string) => readFileSync(new URL(sources[name]!.file, fixtures), 'utf8').trim();
const headerOf = (compact: string) =>
  JSON.parse(Buffer.from(compact.split('.')[0]!, 'base64url').toString('utf8')) as Record<string, unknown> & {
    x5c: string[];
  };
// Baltimore CyberTrust Root: Node.js no longer bundles it (removed with NSS 3.114, and it expired 2025-05-12).
// This copy is the one Microsoft ships in Azure/azure-iot-sdk-c certs/certs.c @ eb147c74 ("Baltimore CyberTrust
// Root"); SHA-256 fingerprint 16:AF:57:A9:F6:76:B0:AB:12:60:95:AA:5E:BA:DE:F2:2A:B3:11:19:D6:44:AC:95:CD:4B:93:DB:F3:F2:6A:EB.
const baltimore = readFileSync(new URL('baltimore-cybertrust-root.pem', fixtures), 'utf8');
const rootsFor = (name: string) => (name === 'kv-create-release' ? { trustedRoots: [baltimore] } : {});

for (const name of ['kv-create-release', 'kv2022-create-release', 'mhsm-create-release']) {
  test(`the real ${name} answer verifies at its recorded time for the host its certificate names`, async (t) => {
    const source = sources[name]!;
    const compact = realAnswer(name);
    const verified = await verifyReleaseResponse(compact, {
      vaultUrl: `https://${source.hostNamedByCertificate}`,
      now: new Date(source.recordedAt),
      ...rootsFor(name),
    });
    const { request, response } = verified.payload;
    t.is(request.enc, 'CKM_RSA_AES_KEY_WRAP');
    // The release named no version: request.kid has none, response.key.key.kid has one, same key.
    t.is(request.kid, response.key.key.kid.slice(0, response.key.key.kid.lastIndexOf('/')));
    t.is(request.nonce, undefined);
    const mhsm = name.startsWith('mhsm');
    t.is(response.key.key.kty, mhsm ? 'RSA' : 'RSA-HSM');
    t.is(response.key.key.e, mhsm ? 'AQAB' : 'AAEAAQ');
    const header = headerOf(compact);
    const leaf = Buffer.from(header.x5c[0]!, 'base64');
    t.is(header.x5c.length, 3);
    t.is(header['x5t#S256'], createHash('sha256').update(leaf).digest('base64url'));
    t.is(
      header.kid,
      mhsm ? header['x5t#S256'] : createHash('sha1').update(leaf).digest('hex').toUpperCase(),
    );
    t.true(verified.signer.checkHost(source.hostNamedByCertificate) !== undefined);

    // The same answer later (certificates expired) or for a host the certificate does not name is refused.
    await t.throwsAsync(
      verifyReleaseResponse(compact, {
        vaultUrl: `https://${source.hostNamedByCertificate}`,
        now: new Date('2026-01-01T00:00:00Z'),
        ...rootsFor(name),
      }),
      { instanceOf: ReleaseResponseInvalidError, message: /not valid at/ },
    );
    await t.throwsAsync(
      verifyReleaseResponse(compact, {
        vaultUrl: mhsm ? 'https://otherhsm.managedhsm.azure.net' : 'https://myvault.vault.azure.net.evil.example',
        now: new Date(source.recordedAt),
        ...rootsFor(name),
      }),
      { instanceOf: ReleaseResponseInvalidError, message: /does not name the vault host/ },
    );
  });
}

test('the real kv answer does not verify without its root: Baltimore is not among the system roots', async (t) => {
  const source = sources['kv-create-release']!;
  await t.throwsAsync(
    verifyReleaseResponse(realAnswer('kv-create-release'), {
      vaultUrl: `https://${source.hostNamedByCertificate}`,
      now: new Date(source.recordedAt),
    }),
    { instanceOf: ReleaseResponseInvalidError, message: /not a trusted root/ },
  );
});

test('a pinned issuer or SPKI narrows which real signer is accepted', async (t) => {
  const source = sources['kv2022-create-release']!;
  const compact = realAnswer('kv2022-create-release');
  const base = { vaultUrl: `https://${source.hostNamedByCertificate}`, now: new Date(source.recordedAt) };
  const [leafB64, issuerB64, rootB64] = headerOf(compact).x5c;
  const spki = (b64: string) =>
    createHash('sha256')
      .update(new X509Certificate(Buffer.from(b64!, 'base64')).publicKey.export({ format: 'der', type: 'spki' }))
      .digest();
  // Microsoft Azure TLS Issuing CA 01, as found in the answer's own x5c[1].
  await t.notThrowsAsync(verifyReleaseResponse(compact, { ...base, signerPins: [{ issuer: Buffer.from(issuerB64!, 'base64') }] }));
  await t.notThrowsAsync(verifyReleaseResponse(compact, { ...base, signerPins: [{ spkiSha256: spki(rootB64!).toString('base64') }] }));
  await t.notThrowsAsync(verifyReleaseResponse(compact, { ...base, signerPins: [{ spkiSha256: spki(leafB64!).toString('hex') }] }));
  const refused = { instanceOf: ReleaseResponseInvalidError, message: /pinned/ };
  // Another Microsoft issuing CA (Microsoft Azure TLS Issuing CA 05, from the Managed HSM answer) is not it.
  const otherIssuer = headerOf(realAnswer('mhsm-create-release')).x5c[1]!;
  const err = await t.throwsAsync(
    verifyReleaseResponse(compact, { ...base, signerPins: [{ issuer: Buffer.from(otherIssuer, 'base64') }] }),
    refused,
  );
  t.is((err as ReleaseResponseInvalidError).check, 'pin');
  await t.throwsAsync(
    verifyReleaseResponse(compact, { ...base, signerPins: [{ spkiSha256: spki(otherIssuer).toString('base64') }] }),
    refused,
  );
  await t.throwsAsync(verifyReleaseResponse(compact, { ...base, signerPins: [] }), refused);
});

// --- what the signer may be (RFC 5280 section 6.1; the real leaves are TLS server certificates) ---

const KU = x509.KeyUsageFlags;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const host = 'myvault.vault.azure.net';

test('a leaf shaped like the real signers (TLS KU and EKU, under an intermediate and root) verifies', async (t) => {
  const root = await testCa('tls root', 30, { keyUsage: KU.keyCertSign | KU.cRLSign });
  const intermediate = await testLeaf(root, {
    cn: 'tls issuing ca',
    ca: true,
    pathLength: 0,
    keyUsage: KU.keyCertSign | KU.cRLSign | KU.digitalSignature,
    extKeyUsage: [SERVER_AUTH, CLIENT_AUTH],
  });
  const leaf = await testLeaf(intermediate, {
    cn: 'vault.azure.net',
    dns: ['vault.azure.net', '*.vault.azure.net'],
    keyUsage: KU.digitalSignature | KU.keyEncipherment | KU.dataEncipherment,
    extKeyUsage: [CLIENT_AUTH, SERVER_AUTH],
  });
  await t.notThrowsAsync(
    verifyReleaseResponse(await jws(leaf, [leaf, intermediate, root]), { vaultUrl, trustedRoots: [root.pem] }),
  );
});

test('a CA leaf, a leaf without digitalSignature or serverAuth, and issuers that may not issue are refused', async (t) => {
  const root = await testCa('strict root', 30, { keyUsage: KU.keyCertSign | KU.cRLSign });
  const trustedRoots = [root.pem];
  const refuse = async (chain: TestCert[], message: RegExp, check: string) => {
    const error = await t.throwsAsync(verifyReleaseResponse(await jws(chain[0]!, chain), { vaultUrl, trustedRoots }), {
      instanceOf: ReleaseResponseInvalidError,
      message,
    });
    t.is((error as ReleaseResponseInvalidError).check, check as never);
  };
  const caLeaf = await testLeaf(root, { dns: [host], ca: true, keyUsage: KU.keyCertSign | KU.digitalSignature });
  await refuse([caLeaf], /is a CA certificate/, 'signer');
  const noSign = await testLeaf(root, { dns: [host], keyUsage: KU.keyEncipherment });
  await refuse([noSign], /lacks digitalSignature/, 'signer');
  const clientOnly = await testLeaf(root, { dns: [host], keyUsage: KU.digitalSignature, extKeyUsage: [CLIENT_AUTH] });
  await refuse([clientOnly], /not for serverAuth/, 'signer');

  // RFC 5280 section 4.2: a critical extension the verifier does not process rejects the certificate.
  const unknownCritical = await testLeaf(root, { dns: [host], criticalExtension: '1.3.6.1.4.1.55555.1' });
  await refuse([unknownCritical], /unknown critical extension 1.3.6.1.4.1.55555.1/, 'chain');

  const noCertSign = await testLeaf(root, { cn: 'no certsign', ca: true, keyUsage: KU.digitalSignature });
  const underNoCertSign = await testLeaf(noCertSign, { dns: [host] });
  await refuse([underNoCertSign, noCertSign], /lacks keyCertSign/, 'chain');

  // pathLenConstraint 0 on the root: no CA may stand between it and the leaf.
  const shortRoot = await testCa('path length 0 root', 30, { pathLength: 0, keyUsage: KU.keyCertSign });
  const middle = await testLeaf(shortRoot, { cn: 'middle ca', ca: true, keyUsage: KU.keyCertSign });
  const deep = await testLeaf(middle, { dns: [host] });
  const pathError = await t.throwsAsync(
    verifyReleaseResponse(await jws(deep, [deep, middle, shortRoot]), { vaultUrl, trustedRoots: [shortRoot.pem] }),
    { instanceOf: ReleaseResponseInvalidError, message: /pathLenConstraint/ },
  );
  t.is((pathError as ReleaseResponseInvalidError).check, 'chain');
  // The same chain under a root that allows one intermediate verifies.
  const roomyRoot = await testCa('path length 1 root', 30, { pathLength: 1, keyUsage: KU.keyCertSign });
  const middle1 = await testLeaf(roomyRoot, { cn: 'middle ca', ca: true, pathLength: 0, keyUsage: KU.keyCertSign });
  const deep1 = await testLeaf(middle1, { dns: [host] });
  await t.notThrowsAsync(
    verifyReleaseResponse(await jws(deep1, [deep1, middle1]), { vaultUrl, trustedRoots: [roomyRoot.pem] }),
  );
});

test('the host is matched on DNS SANs, and on the parsed CN only when there is no SAN', async (t) => {
  const root = await testCa('names root');
  const trustedRoots = [root.pem];
  // An organisation name holding ", CN=<vault host>" is not a common name.
  const trick = await testLeaf(root, {
    subject: [{ O: [`Contoso, CN=${host}`] }, { CN: ['attacker.example'] }],
  });
  await t.throwsAsync(verifyReleaseResponse(await jws(trick, [trick]), { vaultUrl, trustedRoots }), {
    instanceOf: ReleaseResponseInvalidError,
    message: /does not name the vault host/,
  });
  // A real CN and no SAN: accepted. A SAN for another host: the CN is not consulted.
  const cnOnly = await testLeaf(root, { cn: host });
  await t.notThrowsAsync(verifyReleaseResponse(await jws(cnOnly, [cnOnly]), { vaultUrl, trustedRoots }));
  const sanElsewhere = await testLeaf(root, { cn: host, dns: ['other.vault.azure.net'] });
  await t.throwsAsync(verifyReleaseResponse(await jws(sanElsewhere, [sanElsewhere]), { vaultUrl, trustedRoots }), {
    instanceOf: ReleaseResponseInvalidError,
    message: /does not name the vault host/,
  });
  // The escape hatch still replaces the host check; it gets the parsed certificate.
  await t.notThrowsAsync(
    verifyReleaseResponse(await jws(trick, [trick]), {
      vaultUrl,
      trustedRoots,
      signerMatchesVault: (certificate, vaultHost) =>
        certificate instanceof X509Certificate && vaultHost === host && certificate.subject.includes('attacker.example'),
    }),
  );
});

test('header kid, x5t and x5t#S256 must identify x5c[0] when present, in either real shape', async (t) => {
  const p = await pki;
  const trustedRoots = [p.root.pem];
  const der = Buffer.from(p.leaf.b64, 'base64');
  const sha1 = createHash('sha1').update(der).digest();
  const sha256 = createHash('sha256').update(der).digest();
  const vaultShape = {
    kid: sha1.toString('hex').toUpperCase(),
    x5t: sha1.toString('base64url'),
    typ: 'JWT',
    'x5t#S256': sha256.toString('base64url'),
  };
  const hsmShape = { kid: sha256.toString('base64url'), 'x5t#S256': sha256.toString('base64url') };
  for (const header of [vaultShape, hsmShape]) {
    await t.notThrowsAsync(
      verifyReleaseResponse(await jws(p.leaf, [p.leaf, p.root], payload, 'RS256', header), { vaultUrl, trustedRoots }),
    );
  }
  const other = createHash('sha256').update('another certificate').digest();
  for (const [field, value] of [
    ['kid', 'B6BFBD830F2A6857C8BBE95502AB43642E9C48DB'],
    ['x5t', other.subarray(0, 20).toString('base64url')],
    ['x5t#S256', other.toString('base64url')],
  ] as const) {
    const error = await t.throwsAsync(
      verifyReleaseResponse(await jws(p.leaf, [p.leaf, p.root], payload, 'RS256', { ...vaultShape, [field]: value }), {
        vaultUrl,
        trustedRoots,
      }),
      { instanceOf: ReleaseResponseInvalidError, message: new RegExp(`header ${field} does not identify`) },
    );
    t.is((error as ReleaseResponseInvalidError).check, 'header');
  }
});

test('an echoed request.nonce is kept in the parsed payload, and a non-string one is refused', async (t) => {
  const p = await pki;
  const trustedRoots = [p.root.pem];
  const withNonce = { ...payload, request: { ...payload.request, nonce: 'bm9uY2U' } };
  const verified = await verifyReleaseResponse(await jws(p.leaf, [p.leaf], withNonce), { vaultUrl, trustedRoots });
  t.is(verified.payload.request.nonce, 'bm9uY2U');
  const badNonce = { ...payload, request: { ...payload.request, nonce: 42 } };
  await t.throwsAsync(verifyReleaseResponse(await jws(p.leaf, [p.leaf], badNonce), { vaultUrl, trustedRoots }), {
    instanceOf: ReleaseResponseInvalidError,
    message: /request.nonce/,
  });
});
