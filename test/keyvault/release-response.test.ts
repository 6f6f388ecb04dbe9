import { createPrivateKey, webcrypto } from 'node:crypto';
import test from 'ava';
import { CompactSign } from 'jose';
import { ReleaseResponseInvalidError } from '../../src/errors.js';
import { verifyReleaseResponse } from '../../src/keyvault/release-response.js';
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

async function jws(signer: TestCert, chain: TestCert[], body: unknown = payload, alg = 'RS256') {
  return new CompactSign(Buffer.from(JSON.stringify(body)))
    .setProtectedHeader({ alg, x5c: chain.map((c) => c.b64) })
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
  // The chain may stop below the root, name the vault's DNS suffix, use a wildcard, or pass an intermediate.
  await t.notThrowsAsync(verifyReleaseResponse(await jws(p.leaf, [p.leaf]), { vaultUrl, trustedRoots }));
  await t.notThrowsAsync(
    verifyReleaseResponse(await jws(p.suffixLeaf, [p.suffixLeaf]), { vaultUrl, trustedRoots }),
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
