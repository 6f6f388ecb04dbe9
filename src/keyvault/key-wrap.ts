/**
 * The key wrapping Key Vault applies to released keys: the key material is wrapped with AES key wrap with
 * padding (RFC 5649) under a fresh AES-256 key, and that AES key is encrypted with RSA-OAEP to the transfer
 * key from the attestation token. `ciphertext = RSA-OAEP(transfer key, aesKey) || AES-KWP(aesKey, material)`.
 * The constants here are shared by the wrap side (vault emulator) and the unwrap side (client).
 */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  type KeyObject,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import { KeyWrapError } from '../errors.js';

/** Node/OpenSSL cipher name for AES-256 key wrap with padding (RFC 5649). */
export const AES_KWP_CIPHER = 'id-aes256-wrap-pad';
/** RFC 5649 alternative initial value (the 32-bit constant; the message length fills the other half). */
export const AES_KWP_IV: Readonly<Buffer> = Buffer.from('A65959A6', 'hex');
/** Size of the AES key wrapped to the transfer key. */
export const AES_KWP_KEY_BYTES = 32;
/** Smallest transfer key modulus accepted. */
export const MIN_TRANSFER_KEY_BITS = 2048;
export const KEY_HSM_SCHEMA_VERSION = '1.0';

export const RELEASE_ENCRYPTIONS = [
  'CKM_RSA_AES_KEY_WRAP',
  'RSA_AES_KEY_WRAP_256',
  'RSA_AES_KEY_WRAP_384',
] as const;
export type ReleaseEncryption = (typeof RELEASE_ENCRYPTIONS)[number];
/** What the service uses when a release request names no `enc`. */
export const DEFAULT_SERVICE_RELEASE_ENCRYPTION: ReleaseEncryption = 'CKM_RSA_AES_KEY_WRAP';

/** OAEP hash (MGF1 uses the same hash) per release algorithm. */
export const RELEASE_OAEP_HASH: Readonly<Record<ReleaseEncryption, 'sha1' | 'sha256' | 'sha384'>> = {
  CKM_RSA_AES_KEY_WRAP: 'sha1',
  RSA_AES_KEY_WRAP_256: 'sha256',
  RSA_AES_KEY_WRAP_384: 'sha384',
};

export function isReleaseEncryption(v: unknown): v is ReleaseEncryption {
  return typeof v === 'string' && (RELEASE_ENCRYPTIONS as readonly string[]).includes(v);
}

/** The JSON inside `key_hsm` (before base64url). */
export interface KeyHsmEnvelope {
  schema_version: string;
  header: { kid: string; alg: 'dir'; enc: ReleaseEncryption };
  ciphertext: string;
}

/** AES key wrap with padding (RFC 5649) of `plaintext` (1 byte or more) under a 256-bit key. */
export function aesKwpWrap(kek: Uint8Array, plaintext: Uint8Array): Buffer {
  if (kek.length !== AES_KWP_KEY_BYTES) throw new KeyWrapError('AES-KWP key must be 32 bytes');
  if (plaintext.length === 0) throw new KeyWrapError('AES-KWP cannot wrap empty key material');
  const cipher = createCipheriv(AES_KWP_CIPHER, kek, AES_KWP_IV);
  return Buffer.concat([cipher.update(plaintext), cipher.final()]);
}

/** Inverse of `aesKwpWrap`; a wrong key or altered input fails the RFC 5649 integrity check. */
export function aesKwpUnwrap(kek: Uint8Array, wrapped: Uint8Array): Buffer {
  if (kek.length !== AES_KWP_KEY_BYTES) throw new KeyWrapError('AES-KWP key must be 32 bytes');
  if (wrapped.length < 16 || wrapped.length % 8 !== 0) {
    throw new KeyWrapError('AES-KWP ciphertext must be a multiple of 8 bytes and at least 16 bytes');
  }
  try {
    const decipher = createDecipheriv(AES_KWP_CIPHER, kek, AES_KWP_IV);
    return Buffer.concat([decipher.update(wrapped), decipher.final()]);
  } catch (cause) {
    throw new KeyWrapError('AES-KWP integrity check failed: wrong key or damaged ciphertext', { cause });
  }
}

/** Checks that a transfer key is an RSA public key Key Vault would wrap to. */
export function assertTransferKey(key: KeyObject): void {
  if (key.asymmetricKeyType !== 'rsa') throw new KeyWrapError('transfer key must be an RSA key');
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_TRANSFER_KEY_BITS) {
    throw new KeyWrapError(`transfer key must be at least ${MIN_TRANSFER_KEY_BITS} bits, got ${bits}`);
  }
}

export interface WrapForReleaseInput {
  /** RSA public key from the attestation token (`x-ms-runtime.keys`). */
  transferKey: KeyObject;
  /** `kid` of that key, echoed in the `key_hsm` header. */
  transferKid: string;
  enc: ReleaseEncryption;
  /** Raw bytes for `oct`, PKCS#8 DER for RSA and EC keys. Not modified. */
  material: Uint8Array;
}

/**
 * Wraps key material for release and returns the `key_hsm` value (base64url of the envelope JSON).
 * The intermediate AES key is zeroed before returning.
 */
export function wrapForRelease(input: WrapForReleaseInput): string {
  assertTransferKey(input.transferKey);
  const aesKey = randomBytes(AES_KWP_KEY_BYTES);
  try {
    const encryptedKey = publicEncrypt(
      {
        key: input.transferKey,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: RELEASE_OAEP_HASH[input.enc],
      },
      aesKey,
    );
    const wrapped = aesKwpWrap(aesKey, input.material);
    const envelope: KeyHsmEnvelope = {
      schema_version: KEY_HSM_SCHEMA_VERSION,
      header: { kid: input.transferKid, alg: 'dir', enc: input.enc },
      ciphertext: Buffer.concat([encryptedKey, wrapped]).toString('base64url'),
    };
    return Buffer.from(JSON.stringify(envelope), 'utf8').toString('base64url');
  } finally {
    aesKey.fill(0);
  }
}
