import { constants, createPublicKey, generateKeyPairSync, type KeyObject, privateDecrypt } from 'node:crypto';
import type { DecryptScheme, TransferKey } from '../../src/hal/types.js';

/** A transfer key held in memory, for tests of the unwrap path (OAEP only, as release uses it). */
export function memoryTransferKey(
  privateKey?: KeyObject,
  kid = 'TpmEphemeralEncryptionKey',
): TransferKey & {
  privateKey: KeyObject;
  publicKey: KeyObject;
} {
  const key = privateKey ?? generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const publicKey = createPublicKey(key);
  const { n, e } = publicKey.export({ format: 'jwk' });
  const hashes: Partial<Record<DecryptScheme, string>> = {
    'oaep-sha1': 'sha1',
    'oaep-sha256': 'sha256',
    'oaep-sha384': 'sha384',
  };
  return {
    jwk: { kty: 'RSA', n: n!, e: e!, kid, key_ops: ['encrypt'] },
    privateKey: key,
    publicKey,
    async decrypt(ciphertext: Uint8Array, scheme: DecryptScheme): Promise<Buffer> {
      const oaepHash = hashes[scheme];
      if (!oaepHash) throw new Error(`scheme ${scheme} not supported by the test transfer key`);
      return privateDecrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, ciphertext);
    },
  };
}
