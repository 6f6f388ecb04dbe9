import { constants, publicEncrypt, randomBytes } from 'node:crypto';
import test from 'ava';
import fc from 'fast-check';
import { encryptForTransferKey } from '../../src/emulator/maa/server.js';
import { InMemoryTransferKey, unpadPkcs1Type2 } from '../../src/hal/memory-transfer-key.js';
import { AttestationResponseError } from '../../src/errors.js';
import { openAzureGuestToken } from '../../src/maa/response.js';

const key = InMemoryTransferKey.generate('TpmEphemeralEncryptionKey');
const other = InMemoryTransferKey.generate('TpmEphemeralEncryptionKey');
const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln';

test('an AzureGuest answer opens with the transfer key it was sealed to', async (t) => {
  t.is(await openAzureGuestToken(encryptForTransferKey(jwt, key.publicKey), key), jwt);
});

test('another key, a changed ciphertext or a changed tag do not open it', async (t) => {
  const sealed = encryptForTransferKey(jwt, key.publicKey);
  await t.throwsAsync(openAzureGuestToken(sealed, other), { instanceOf: AttestationResponseError });
  const envelope = JSON.parse(Buffer.from(sealed, 'base64url').toString()) as Record<string, string>;
  const flip = (b64: string) => {
    const b = Buffer.from(b64, 'base64');
    b[0] = (b[0] ?? 0) ^ 1;
    return b.toString('base64');
  };
  for (const field of ['Jwt', 'AuthenticationData'] as const) {
    const bad = { ...envelope, [field]: flip(envelope[field]!) };
    await t.throwsAsync(openAzureGuestToken(Buffer.from(JSON.stringify(bad)).toString('base64url'), key), {
      instanceOf: AttestationResponseError,
    });
  }
  await t.throwsAsync(openAzureGuestToken('%%%', key), { instanceOf: AttestationResponseError });
});

test('RSAES-PKCS1-v1_5 decryption of the in-memory key round-trips any short message', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 245 }), async (message) => {
      const ct = publicEncrypt({ key: key.publicKey, padding: constants.RSA_PKCS1_PADDING }, message);
      const out = await key.decrypt(ct, 'rsaes');
      return Buffer.compare(out, Buffer.from(message)) === 0;
    }),
    { numRuns: 50 },
  );
  t.pass();
});

test('PKCS#1 v1.5 unpadding rejects wrong block types, short padding and a missing separator', (t) => {
  const ok = Buffer.concat([Buffer.from([0, 2]), Buffer.alloc(8, 0x55), Buffer.from([0]), Buffer.from('hi')]);
  t.deepEqual(unpadPkcs1Type2(ok), Buffer.from('hi'));
  t.is(unpadPkcs1Type2(Buffer.concat([Buffer.from([0, 1]), ok.subarray(2)])), undefined);
  t.is(
    unpadPkcs1Type2(Buffer.concat([Buffer.from([0, 2]), Buffer.alloc(7, 0x55), Buffer.from([0, 1])])),
    undefined,
  );
  t.is(unpadPkcs1Type2(Buffer.concat([Buffer.from([0, 2]), randomBytes(30).map((b) => b | 1)])), undefined);
});
