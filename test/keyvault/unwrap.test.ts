import {
  createPrivateKey,
  generateKeyPairSync,
  sign,
  verify,
  createPublicKey,
  randomBytes,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import test from 'ava';
import { UnwrapFailedError } from '../../src/errors.js';
import { RELEASE_ENCRYPTIONS, type ReleaseEncryption, wrapForRelease } from '../../src/keyvault/key-wrap.js';
import type { ReleasedKeyJwk } from '../../src/keyvault/release-response.js';
import { unwrapKeyMaterial, unwrapReleasedKey } from '../../src/keyvault/unwrap.js';
import { memoryTransferKey } from '../helpers/transfer-key.js';

const vector = JSON.parse(
  readFileSync(new URL('../fixtures/skr/rsa-aes-unwrap.json', import.meta.url), 'utf8'),
) as {
  enc: ReleaseEncryption;
  privateKeyPem: string;
  ciphertext: string;
  expectedKeyHex: string;
};

test('the shared released-key vector unwraps to the expected key', async (t) => {
  const transferKey = memoryTransferKey(createPrivateKey(vector.privateKeyPem));
  const material = await unwrapKeyMaterial(
    Buffer.from(vector.ciphertext, 'base64url'),
    transferKey,
    vector.enc,
  );
  t.is(material.toString('hex'), vector.expectedKeyHex);
  t.is(vector.enc, 'CKM_RSA_AES_KEY_WRAP');
});

test('the shared vector fails with another transfer key, another enc, or a truncated ciphertext', async (t) => {
  const right = memoryTransferKey(createPrivateKey(vector.privateKeyPem));
  const ciphertext = Buffer.from(vector.ciphertext, 'base64url');
  await t.throwsAsync(unwrapKeyMaterial(ciphertext, memoryTransferKey(), vector.enc), {
    instanceOf: UnwrapFailedError,
  });
  await t.throwsAsync(unwrapKeyMaterial(ciphertext, right, 'RSA_AES_KEY_WRAP_256'), {
    instanceOf: UnwrapFailedError,
  });
  await t.throwsAsync(unwrapKeyMaterial(ciphertext.subarray(0, ciphertext.length - 8), right, vector.enc), {
    instanceOf: UnwrapFailedError,
  });
  await t.throwsAsync(unwrapKeyMaterial(ciphertext.subarray(0, 256 + 8), right, vector.enc), {
    instanceOf: UnwrapFailedError,
    message: /too short/,
  });
  const flipped = Buffer.from(ciphertext);
  flipped[flipped.length - 1]! ^= 1;
  await t.throwsAsync(unwrapKeyMaterial(flipped, right, vector.enc), { instanceOf: UnwrapFailedError });
});

function releasedKey(
  kty: string,
  material: Buffer,
  transferKid: string,
  enc: ReleaseEncryption,
  publicJwk = {},
) {
  return (transferKey: ReturnType<typeof memoryTransferKey>): ReleasedKeyJwk => ({
    kid: 'https://vault.example/keys/k/1',
    kty,
    ...publicJwk,
    key_hsm: wrapForRelease({ transferKey: transferKey.publicKey, transferKid, enc, material }),
  });
}

for (const enc of RELEASE_ENCRYPTIONS) {
  test(`RSA-HSM, EC-HSM and oct-HSM keys wrapped with ${enc} unwrap to working KeyObjects`, async (t) => {
    const transferKey = memoryTransferKey();
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const oct = randomBytes(32);
    const data = Buffer.from('released keys work');

    const rsaJwk = rsa.publicKey.export({ format: 'jwk' });
    const rsaKey = await unwrapReleasedKey(
      releasedKey(
        'RSA-HSM',
        rsa.privateKey.export({ format: 'der', type: 'pkcs8' }),
        transferKey.jwk.kid,
        enc,
        {
          n: rsaJwk.n,
          e: rsaJwk.e,
        },
      )(transferKey),
      { transferKey, enc },
    );
    t.is(rsaKey.type, 'private');
    t.true(verify('sha256', data, rsa.publicKey, sign('sha256', data, rsaKey)));

    const ecJwk = ec.publicKey.export({ format: 'jwk' });
    const ecKey = await unwrapReleasedKey(
      releasedKey(
        'EC-HSM',
        ec.privateKey.export({ format: 'der', type: 'pkcs8' }),
        transferKey.jwk.kid,
        enc,
        {
          crv: ecJwk.crv,
          x: ecJwk.x,
          y: ecJwk.y,
        },
      )(transferKey),
      { transferKey, enc },
    );
    t.true(verify('sha384', data, ec.publicKey, sign('sha384', data, ecKey)));

    const octKey = await unwrapReleasedKey(
      releasedKey('oct-HSM', oct, transferKey.jwk.kid, enc)(transferKey),
      {
        transferKey,
        enc,
      },
    );
    t.is(octKey.type, 'secret');
    t.deepEqual(octKey.export(), oct);
  });
}

test('key_hsm for another transfer key, a mismatched enc or a foreign public key is refused', async (t) => {
  const transferKey = memoryTransferKey();
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const other = createPublicKey(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey).export({
    format: 'jwk',
  });
  const material = rsa.privateKey.export({ format: 'der', type: 'pkcs8' });
  const enc = 'RSA_AES_KEY_WRAP_256';
  await t.throwsAsync(
    unwrapReleasedKey(releasedKey('RSA-HSM', material, 'someone-else', enc)(transferKey), {
      transferKey,
      enc,
    }),
    { instanceOf: UnwrapFailedError, message: /not ours/ },
  );
  await t.throwsAsync(
    unwrapReleasedKey(
      releasedKey('RSA-HSM', material, transferKey.jwk.kid, 'RSA_AES_KEY_WRAP_384')(transferKey),
      {
        transferKey,
        enc,
      },
    ),
    { instanceOf: UnwrapFailedError, message: /differs from the requested/ },
  );
  await t.throwsAsync(
    unwrapReleasedKey(
      releasedKey('RSA-HSM', material, transferKey.jwk.kid, enc, { n: other.n, e: other.e })(transferKey),
      { transferKey, enc },
    ),
    { instanceOf: UnwrapFailedError, message: /does not match the public n/ },
  );
  await t.throwsAsync(
    unwrapReleasedKey(releasedKey('EC-HSM', material, transferKey.jwk.kid, enc)(transferKey), {
      transferKey,
      enc,
    }),
    { instanceOf: UnwrapFailedError, message: /rsa key, but the vault says EC-HSM/ },
  );
  await t.throwsAsync(
    unwrapReleasedKey({ kid: 'k', kty: 'RSA', key_hsm: 'bm90IGpzb24' }, { transferKey, enc }),
    { instanceOf: UnwrapFailedError, message: /base64url JSON/ },
  );
});
