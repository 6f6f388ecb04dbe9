import { constants, createPrivateKey, generateKeyPairSync, privateDecrypt, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import test from 'ava';
import fc from 'fast-check';
import { KeyWrapError } from '../../src/errors.js';
import {
  AES_KWP_IV,
  aesKwpUnwrap,
  aesKwpWrap,
  type KeyHsmEnvelope,
  RELEASE_ENCRYPTIONS,
  RELEASE_OAEP_HASH,
  wrapForRelease,
} from '../../src/keyvault/key-wrap.js';

const fixture = JSON.parse(
  readFileSync(new URL('../fixtures/skr/rsa-aes-unwrap.json', import.meta.url), 'utf8'),
) as {
  enc: 'CKM_RSA_AES_KEY_WRAP';
  privateKeyPem: string;
  ciphertext: string;
  expectedKeyHex: string;
};

test('the shared constants unwrap a ciphertext released by the real service', (t) => {
  t.is(AES_KWP_IV.toString('hex'), 'a65959a6');
  const key = createPrivateKey(fixture.privateKeyPem);
  const ct = Buffer.from(fixture.ciphertext, 'base64url');
  const aesKey = privateDecrypt(
    { key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: RELEASE_OAEP_HASH[fixture.enc] },
    ct.subarray(0, 256),
  );
  t.is(aesKwpUnwrap(aesKey, ct.subarray(256)).toString('hex'), fixture.expectedKeyHex);
});

test('the key-encryption key must be 256 bits', (t) => {
  for (const size of [16, 24, 31, 33]) {
    t.throws(() => aesKwpWrap(randomBytes(size), randomBytes(32)), { instanceOf: KeyWrapError });
  }
});

test('wrap/unwrap round-trips any length and detects tampering', (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 600 }), (bytes) => {
      const kek = randomBytes(32);
      const wrapped = aesKwpWrap(kek, bytes);
      if (wrapped.length % 8 !== 0 || wrapped.length < 16) return false;
      if (!aesKwpUnwrap(kek, wrapped).equals(Buffer.from(bytes))) return false;
      const bad = Buffer.from(wrapped);
      bad[bad.length - 1]! ^= 1;
      try {
        aesKwpUnwrap(kek, bad);
        return false;
      } catch (e) {
        return e instanceof KeyWrapError;
      }
    }),
    { numRuns: 200 },
  );
  t.throws(() => aesKwpUnwrap(randomBytes(32), Buffer.alloc(12)), { instanceOf: KeyWrapError });
  t.throws(() => aesKwpWrap(randomBytes(32), Buffer.alloc(0)), { instanceOf: KeyWrapError });
});

test('wrapForRelease builds the key_hsm envelope for every enc', (t) => {
  const transfer = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const material = randomBytes(32);
  for (const enc of RELEASE_ENCRYPTIONS) {
    const keyHsm = wrapForRelease({ transferKey: transfer.publicKey, transferKid: 'tk', enc, material });
    const env = JSON.parse(Buffer.from(keyHsm, 'base64url').toString('utf8')) as KeyHsmEnvelope;
    t.deepEqual(env.header, { kid: 'tk', alg: 'dir', enc });
    t.is(env.schema_version, '1.0');
    const ct = Buffer.from(env.ciphertext, 'base64url');
    const aesKey = privateDecrypt(
      {
        key: transfer.privateKey,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: RELEASE_OAEP_HASH[enc],
      },
      ct.subarray(0, 256),
    );
    t.true(aesKwpUnwrap(aesKey, ct.subarray(256)).equals(material));
  }
});

test('transfer keys that Key Vault would not use are refused', (t) => {
  const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
  for (const transferKey of [small, ec]) {
    t.throws(
      () =>
        wrapForRelease({
          transferKey,
          transferKid: 'x',
          enc: 'RSA_AES_KEY_WRAP_256',
          material: randomBytes(32),
        }),
      { instanceOf: KeyWrapError },
    );
  }
});
