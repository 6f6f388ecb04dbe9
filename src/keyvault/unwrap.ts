/**
 * Turns a verified release answer into the key it carries: RSA-OAEP through the platform's transfer key
 * (inside the TPM on azure-vtpm), then AES key wrap with padding, then a `KeyObject`. Every intermediate
 * buffer is zeroed, on failure too.
 */
import { createPrivateKey, createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { CvmSkrError, KeyWrapError, UnwrapFailedError } from '../errors.js';
import type { DecryptScheme, TransferKey } from '../hal/types.js';
import {
  AES_KWP_KEY_BYTES,
  aesKwpUnwrap,
  KEY_HSM_SCHEMA_VERSION,
  RELEASE_OAEP_HASH,
  type ReleaseEncryption,
} from './key-wrap.js';
import type { ReleasedKeyJwk } from './release-response.js';

const OAEP_SCHEME: Readonly<Record<'sha1' | 'sha256' | 'sha384', DecryptScheme>> = {
  sha1: 'oaep-sha1',
  sha256: 'oaep-sha256',
  sha384: 'oaep-sha384',
};

/** Largest key material accepted after unwrapping (PKCS#8 of RSA-4096 is about 2.4 KB). */
const MAX_MATERIAL_BYTES = 16 * 1024;

const failed = (message: string, cause?: unknown) =>
  new UnwrapFailedError(
    `cannot unwrap the released key: ${message}`,
    cause === undefined ? undefined : { cause },
  );

interface KeyHsm {
  header: { kid: string; alg: string; enc: string };
  ciphertext: Buffer;
}

function parseKeyHsm(keyHsm: string): KeyHsm {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(keyHsm, 'base64url').toString('utf8'));
  } catch (error) {
    throw failed('key_hsm is not base64url JSON', error);
  }
  const envelope = json as {
    schema_version?: unknown;
    header?: Record<string, unknown>;
    ciphertext?: unknown;
  };
  if (
    typeof envelope !== 'object' ||
    envelope === null ||
    typeof envelope.header !== 'object' ||
    !envelope.header
  ) {
    throw failed('key_hsm has no header');
  }
  if (envelope.schema_version !== KEY_HSM_SCHEMA_VERSION) {
    throw failed(
      `key_hsm schema_version ${JSON.stringify(envelope.schema_version)} is not "${KEY_HSM_SCHEMA_VERSION}"`,
    );
  }
  const { kid, alg, enc } = envelope.header;
  if (typeof kid !== 'string' || typeof alg !== 'string' || typeof enc !== 'string') {
    throw failed('key_hsm header lacks kid, alg or enc');
  }
  if (typeof envelope.ciphertext !== 'string' || !/^[A-Za-z0-9_-]+$/.test(envelope.ciphertext)) {
    throw failed('key_hsm ciphertext is missing or not base64url');
  }
  return { header: { kid, alg, enc }, ciphertext: Buffer.from(envelope.ciphertext, 'base64url') };
}

function modulusBytes(transferKey: TransferKey): number {
  const n = Buffer.from(transferKey.jwk.n, 'base64url');
  let start = 0;
  while (start < n.length && n[start] === 0) start++;
  return n.length - start;
}

/**
 * Decrypts the wrapped key material of `key_hsm`: the first modulus-size bytes are RSA-OAEP (hash of `enc`)
 * of an AES-256 key, the rest is RFC 5649 key wrap of the material. The caller owns (and must zero) the result.
 */
export async function unwrapKeyMaterial(
  ciphertext: Uint8Array,
  transferKey: TransferKey,
  enc: ReleaseEncryption,
): Promise<Buffer> {
  const rsaBytes = modulusBytes(transferKey);
  // At least one 8-byte semiblock of material plus the 8-byte integrity block.
  if (ciphertext.length < rsaBytes + 16) {
    throw failed(
      `ciphertext of ${ciphertext.length} bytes is too short for a ${rsaBytes * 8}-bit transfer key`,
    );
  }
  let aesKey: Buffer | undefined;
  try {
    try {
      aesKey = await transferKey.decrypt(
        ciphertext.subarray(0, rsaBytes),
        OAEP_SCHEME[RELEASE_OAEP_HASH[enc]],
      );
    } catch (error) {
      // Name the platform's own failure (e.g. a TPM error code) so a device problem does not read as bad data.
      const why = error instanceof CvmSkrError ? `: ${error.message} [${error.code}]` : '';
      throw failed(
        `the transfer key could not decrypt the wrapping key (RSA-OAEP ${RELEASE_OAEP_HASH[enc]})${why}`,
        error,
      );
    }
    if (aesKey.length !== AES_KWP_KEY_BYTES)
      throw failed(`the wrapping key is ${aesKey.length} bytes, not 32`);
    let material: Buffer;
    try {
      material = aesKwpUnwrap(aesKey, ciphertext.subarray(rsaBytes));
    } catch (error) {
      throw failed(error instanceof KeyWrapError ? error.message : 'AES key unwrap failed', error);
    }
    if (material.length > MAX_MATERIAL_BYTES) {
      material.fill(0);
      throw failed(`unwrapped material of ${material.length} bytes is implausibly large`);
    }
    return material;
  } finally {
    aesKey?.fill(0);
  }
}

/** base64url of a big-endian unsigned integer without its leading zero bytes (`AAEAAQ` and `AQAB` are both 65537). */
function integerBytes(value: string): Buffer {
  const bytes = Buffer.from(value, 'base64url');
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  return bytes.subarray(start);
}

/**
 * The private key must belong to the public key the vault published beside it. RSA `n`/`e` and EC `x`/`y` are
 * integers: regular vaults send `e` as "AAEAAQ" (a leading zero byte; test/fixtures/real-release/kv*.jws),
 * Managed HSM and Node.js as "AQAB", so they are compared as numbers, not as strings. `crv` is a name.
 */
function checkMatchesPublic(key: KeyObject, released: ReleasedKeyJwk): void {
  const pub = createPublicKey(key).export({ format: 'jwk' }) as Record<string, string | undefined>;
  const fields = released.kty.startsWith('RSA') ? (['n', 'e'] as const) : (['crv', 'x', 'y'] as const);
  for (const field of fields) {
    const expected = released[field];
    if (expected === undefined) continue;
    const actual = pub[field];
    const same =
      actual !== undefined &&
      (field === 'crv' ? actual === expected : integerBytes(actual).equals(integerBytes(expected)));
    if (!same) throw failed(`the unwrapped key does not match the public ${field} the vault returned`);
  }
}

/** Builds a `KeyObject` from unwrapped material: PKCS#8 for RSA/EC, raw bytes for oct. */
export function keyObjectFromMaterial(material: Buffer, released: ReleasedKeyJwk): KeyObject {
  const kty = released.kty;
  if (kty === 'oct' || kty === 'oct-HSM') return createSecretKey(material);
  if (kty === 'RSA' || kty === 'RSA-HSM' || kty === 'EC' || kty === 'EC-HSM') {
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: material, format: 'der', type: 'pkcs8' });
    } catch (error) {
      throw failed(`the unwrapped ${kty} material is not a PKCS#8 private key`, error);
    }
    const expectedType = kty.startsWith('RSA') ? 'rsa' : 'ec';
    if (key.asymmetricKeyType !== expectedType) {
      throw failed(`the unwrapped material is a ${key.asymmetricKeyType} key, but the vault says ${kty}`);
    }
    checkMatchesPublic(key, released);
    return key;
  }
  throw failed(`key type ${JSON.stringify(kty)} cannot be released`);
}

export interface UnwrapReleasedKeyOptions {
  transferKey: TransferKey;
  /** The `enc` the release asked for; the envelope must say the same. */
  enc: ReleaseEncryption;
}

/** Unwraps a released key (from a verified answer) into a `KeyObject`. */
export async function unwrapReleasedKey(
  released: ReleasedKeyJwk,
  options: UnwrapReleasedKeyOptions,
): Promise<KeyObject> {
  const envelope = parseKeyHsm(released.key_hsm);
  try {
    if (envelope.header.kid !== options.transferKey.jwk.kid) {
      throw failed(
        `key_hsm is wrapped for transfer key ${JSON.stringify(envelope.header.kid)}, not ours (${JSON.stringify(options.transferKey.jwk.kid)})`,
      );
    }
    if (envelope.header.alg !== 'dir')
      throw failed(`key_hsm alg ${JSON.stringify(envelope.header.alg)} is not "dir"`);
    if (envelope.header.enc !== options.enc) {
      throw failed(`key_hsm enc ${envelope.header.enc} differs from the requested ${options.enc}`);
    }
    const material = await unwrapKeyMaterial(envelope.ciphertext, options.transferKey, options.enc);
    try {
      return keyObjectFromMaterial(material, released);
    } finally {
      material.fill(0);
    }
  } finally {
    envelope.ciphertext.fill(0);
  }
}
