/**
 * A transfer key held in process memory: the SEV-SNP guest's key (generated in guest memory, never exported) and
 * the emulated platforms' keys. Node
 * refuses PKCS#1 v1.5 private decryption (CVE-2023-46809), but the attestation service wraps its inner key that
 * way, so `rsaes` decrypts with the raw RSA primitive and checks the padding here, in one pass over every byte.
 */
import { constants, generateKeyPairSync, type KeyObject, privateDecrypt } from 'node:crypto';
import { InvalidArgumentError, PlatformClosedError, TransferKeyDecryptError } from '../errors.js';
import type { DecryptScheme, TransferKey } from './types.js';

const OAEP_HASH: Record<Exclude<DecryptScheme, 'rsaes'>, string> = {
  'oaep-sha1': 'sha1',
  'oaep-sha256': 'sha256',
  'oaep-sha384': 'sha384',
};

/** Strips EME-PKCS1-v1_5 padding (00 02 PS 00 M, PS at least 8 nonzero bytes) without early exits. */
export function unpadPkcs1Type2(em: Uint8Array): Buffer | undefined {
  let bad = (em[0] ?? 1) | ((em[1] ?? 0) ^ 2);
  let separator = 0;
  for (let i = 2; i < em.length; i++) {
    const isZero = em[i] === 0 ? 1 : 0;
    const first = isZero & (separator === 0 ? 1 : 0);
    separator = first ? i : separator;
  }
  bad |= separator === 0 ? 1 : 0;
  bad |= separator < 10 ? 1 : 0;
  return bad === 0 ? Buffer.from(em.subarray(separator + 1)) : undefined;
}

export class InMemoryTransferKey implements TransferKey {
  readonly jwk: { kty: 'RSA'; n: string; e: string; kid: string; key_ops: string[] };
  readonly publicKey: KeyObject;
  readonly #privateKey: KeyObject;
  readonly #isClosed: () => boolean;
  readonly modulusBytes: number;

  /** `isClosed`: the owning platform's state; a closed platform's key refuses to decrypt. */
  constructor(privateKey: KeyObject, kid: string, publicKey: KeyObject, isClosed: () => boolean = () => false) {
    const jwk = publicKey.export({ format: 'jwk' });
    if (jwk.kty !== 'RSA' || typeof jwk.n !== 'string' || typeof jwk.e !== 'string') {
      throw new InvalidArgumentError('a transfer key must be RSA');
    }
    this.jwk = { kty: 'RSA', n: jwk.n, e: jwk.e, kid, key_ops: ['encrypt'] };
    this.publicKey = publicKey;
    this.#privateKey = privateKey;
    this.#isClosed = isClosed;
    this.modulusBytes = Buffer.from(jwk.n, 'base64url').length;
  }

  /** A fresh RSA key (2048 bits unless told). */
  static generate(kid: string, modulusLength = 2048): InMemoryTransferKey {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength });
    return new InMemoryTransferKey(privateKey, kid, publicKey);
  }

  async decrypt(ciphertext: Uint8Array, scheme: DecryptScheme): Promise<Buffer> {
    if (this.#isClosed()) throw new PlatformClosedError('the platform owning this transfer key was closed; open a new one');
    if (ciphertext.length !== this.modulusBytes) {
      // The ciphertext comes from a remote service: a wrong length is damaged input, not a caller mistake.
      throw new TransferKeyDecryptError(
        `ciphertext is ${ciphertext.length} bytes; the ${this.modulusBytes * 8}-bit transfer key needs ${this.modulusBytes}`,
      );
    }
    try {
      if (scheme === 'rsaes') {
        const em = privateDecrypt({ key: this.#privateKey, padding: constants.RSA_NO_PADDING }, ciphertext);
        const out = unpadPkcs1Type2(em);
        em.fill(0);
        if (out === undefined) throw new TransferKeyDecryptError('RSAES-PKCS1-v1_5 padding is invalid');
        return out;
      }
      const oaepHash = OAEP_HASH[scheme];
      if (oaepHash === undefined) throw new InvalidArgumentError(`unknown decrypt scheme ${String(scheme)}`);
      return privateDecrypt(
        { key: this.#privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash },
        ciphertext,
      );
    } catch (error) {
      if (error instanceof TransferKeyDecryptError || error instanceof InvalidArgumentError) throw error;
      throw new TransferKeyDecryptError(
        `the transfer key could not decrypt (${scheme}): wrong key, wrong scheme, or corrupted ciphertext`,
        { cause: error },
      );
    }
  }
}
