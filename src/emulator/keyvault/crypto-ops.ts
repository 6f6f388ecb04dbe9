/**
 * The keys data plane of the emulated vault: `POST /keys/{name}/{version}/{encrypt|decrypt|sign|verify|
 * wrapkey|unwrapkey}` with the algorithms the service lists per key type.
 *
 * Wire format (field names from Azure/azure-rest-api-specs
 * `specification/keyvault/data-plane/Microsoft.KeyVault/stable/7.5/keys.json`, KeyOperationsParameters,
 * KeySignParameters, KeyVerifyParameters, KeyOperationResult, KeyVerifyResult): requests carry `alg` and a
 * base64url `value` (plus `iv`, `aad`, `tag` for AES, `digest` for verify); answers carry `kid` and `value`
 * (plus `iv`, `tag`, `aad` for AES; a boolean `value` for verify). An empty version segment
 * (`/keys/k//encrypt`, what the SDK sends for a versionless key id) means the current version.
 *
 * Rules, in the order the service applies them:
 * - `key_ops` must list the operation: 403 Forbidden "Operation decrypt is not permitted on this key." with
 *   innererror KeyOperationForbidden (Azure/azure-sdk-for-cpp `sdk/keyvault/TROUBLESHOOTING.md`,
 *   "Operation Not Permitted").
 * - A disabled key refuses every operation: 403 Forbidden "Operation X is not allowed on a disabled key."
 *   (innererror KeyDisabled). No recording of this answer was found; the wording is the one Microsoft
 *   documents for Managed HSM key operations (MicrosoftDocs/azure-docs, Managed HSM "EKM Proxy API reference",
 *   error example).
 * - Outside `nbf`..`exp` only encrypt, sign and wrapKey are refused; decrypt, verify and unwrapKey keep
 *   working so that data is never locked in (Azure/azure-sdk-for-net#7677, "Encrypt, Sign, and Wrap should
 *   honor nbf, exp ... as on the server side ... Do not crypto-lock customers ... in Decrypt, Verify, or
 *   UnwrapKey"). The answer's wording has no recording; the emulator says 403 Forbidden with what to check.
 *
 * Every primitive is node:crypto except ECDSA over a digest: node signs and verifies only messages it hashes
 * itself, while Key Vault signs digests, so ECDSA uses @noble/curves with `prehash: false`. RSA-PSS over a
 * digest is EMSA-PSS (RFC 8017 section 9.1) around node's raw RSA; RSA1_5 decryption strips the PKCS#1 v1.5
 * padding itself because node 20 refuses RSA_PKCS1_PADDING for private decryption (CVE-2023-46809).
 */
import {
  type CipherGCMTypes,
  constants,
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  privateDecrypt,
  privateEncrypt,
  publicDecrypt,
  publicEncrypt,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { p256, p384, p521 } from '@noble/curves/nist';
import { secp256k1 } from '@noble/curves/secp256k1';
import { EmulatedVaultRequestError } from '../errors.js';
import { baseKty, type VaultCurve } from './key-material.js';
import type { StoredVersion, VaultStore } from './store.js';
import { VaultErrors } from './vault-error.js';

type Json = Record<string, unknown>;

export const CRYPTO_OPERATIONS = ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey'] as const;
export type CryptoOperation = (typeof CRYPTO_OPERATIONS)[number];

/** The REST path segment (`wrapkey`) of each operation name (`wrapKey`, as in `key_ops`). */
const BY_PATH: Record<string, CryptoOperation> = {
  encrypt: 'encrypt',
  decrypt: 'decrypt',
  sign: 'sign',
  verify: 'verify',
  wrapkey: 'wrapKey',
  unwrapkey: 'unwrapKey',
};

export function cryptoOperationFromPath(segment: string | undefined): CryptoOperation | undefined {
  return segment === undefined ? undefined : BY_PATH[segment.toLowerCase()];
}

/** Operations the validity period (nbf/exp) applies to; the others keep working on expired keys. */
const TIME_BOUND: ReadonlySet<CryptoOperation> = new Set(['encrypt', 'sign', 'wrapKey']);

const RSA_ENCRYPTION = ['RSA1_5', 'RSA-OAEP', 'RSA-OAEP-256'] as const;
const AES_KW = { A128KW: 16, A192KW: 24, A256KW: 32 } as const;
const AES_GCM = { A128GCM: 16, A192GCM: 24, A256GCM: 32 } as const;
const AES_CBC = { A128CBC: 16, A192CBC: 24, A256CBC: 32 } as const;
const AES_CBCPAD = { A128CBCPAD: 16, A192CBCPAD: 24, A256CBCPAD: 32 } as const;
const RSA_SIGN: Record<string, { hash: string; pss: boolean }> = {
  RS256: { hash: 'sha256', pss: false },
  RS384: { hash: 'sha384', pss: false },
  RS512: { hash: 'sha512', pss: false },
  PS256: { hash: 'sha256', pss: true },
  PS384: { hash: 'sha384', pss: true },
  PS512: { hash: 'sha512', pss: true },
};
const EC_SIGN: Record<string, { crv: VaultCurve; digestBytes: number }> = {
  ES256: { crv: 'P-256', digestBytes: 32 },
  ES384: { crv: 'P-384', digestBytes: 48 },
  ES512: { crv: 'P-521', digestBytes: 64 },
  ES256K: { crv: 'P-256K', digestBytes: 32 },
};
const NOBLE = { 'P-256': p256, 'P-384': p384, 'P-521': p521, 'P-256K': secp256k1 } as const;

/** DER DigestInfo prefixes (RFC 8017 section 9.2, note 1) for PKCS#1 v1.5 signatures over a digest. */
const DIGEST_INFO: Record<string, Buffer> = {
  sha256: Buffer.from('3031300d060960864801650304020105000420', 'hex'),
  sha384: Buffer.from('3041300d060960864801650304020205000430', 'hex'),
  sha512: Buffer.from('3051300d060960864801650304020305000440', 'hex'),
};
const HASH_BYTES: Record<string, number> = { sha256: 32, sha384: 48, sha512: 64 };

const B64URL = /^[A-Za-z0-9_-]*$/;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bytesField(body: Json, field: string, required: true): Buffer;
function bytesField(body: Json, field: string, required: boolean): Buffer | undefined;
function bytesField(body: Json, field: string, required: boolean): Buffer | undefined {
  const v = body[field];
  if (v === undefined || v === null) {
    if (required) throw VaultErrors.badParameter(`${field} is required.`);
    return undefined;
  }
  if (typeof v !== 'string' || !B64URL.test(v)) {
    throw VaultErrors.badParameter(`${field} must be base64url.`);
  }
  return Buffer.from(v, 'base64url');
}

function unsupported(alg: string, kty: string, op: CryptoOperation): EmulatedVaultRequestError {
  return VaultErrors.badParameter(
    `Algorithm ${alg.slice(0, 20)} is not supported for ${op} with a ${kty} key: check alg against the key type.`,
  );
}

function keySizeMismatch(alg: string, bytes: number): EmulatedVaultRequestError {
  return VaultErrors.badParameter(`Algorithm ${alg} needs a ${bytes * 8}-bit key: use the matching A*** variant.`);
}

function forbidden(message: string, inner: string): EmulatedVaultRequestError {
  return new EmulatedVaultRequestError(403, 'Forbidden', message, inner);
}

/** The service's refusals for the key's state, in its order (see the module comment for sources). */
export function checkKeyUsable(v: StoredVersion, op: CryptoOperation, nowSeconds: number): void {
  if (!v.keyOps.includes(op)) {
    throw forbidden(`Operation ${op} is not permitted on this key.`, 'KeyOperationForbidden');
  }
  if (!v.enabled) throw forbidden(`Operation ${op} is not allowed on a disabled key.`, 'KeyDisabled');
  if (TIME_BOUND.has(op)) {
    if (v.nbf !== undefined && nowSeconds < v.nbf) {
      throw forbidden(
        `Operation ${op} is not allowed before the key's not-before time (nbf ${v.nbf}).`,
        'KeyNotYetValid',
      );
    }
    if (v.exp !== undefined && nowSeconds >= v.exp) {
      throw forbidden(`Operation ${op} is not allowed on an expired key (exp ${v.exp}).`, 'KeyExpired');
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// RSA
// ---------------------------------------------------------------------------------------------------------

function rsaPrivate(v: StoredVersion): KeyObject {
  return createPrivateKey({ key: v.material.jwk, format: 'jwk' });
}

function rsaPublic(v: StoredVersion): KeyObject {
  return createPublicKey({ key: { kty: 'RSA', n: v.material.jwk.n!, e: v.material.jwk.e! }, format: 'jwk' });
}

function modulusBytes(key: KeyObject): number {
  return Math.ceil(key.asymmetricKeyDetails!.modulusLength! / 8);
}

function rsaEncrypt(v: StoredVersion, alg: string, plaintext: Buffer): Buffer {
  const key = rsaPublic(v);
  try {
    if (alg === 'RSA1_5') return publicEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, plaintext);
    return publicEncrypt(
      {
        key,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: alg === 'RSA-OAEP-256' ? 'sha256' : 'sha1',
      },
      plaintext,
    );
  } catch {
    throw VaultErrors.badParameter('The value is too long for this key and algorithm.');
  }
}

/** PKCS#1 v1.5 type 2 unpadding (RFC 8017 section 7.2.2, step 3). */
function pkcs1v15Unpad(em: Buffer): Buffer | undefined {
  if (em.length < 11 || em[0] !== 0 || em[1] !== 2) return undefined;
  const sep = em.indexOf(0, 2);
  if (sep < 10) return undefined;
  return em.subarray(sep + 1);
}

function rsaDecrypt(v: StoredVersion, alg: string, ciphertext: Buffer): Buffer {
  const key = rsaPrivate(v);
  const k = modulusBytes(key);
  const bad = () => VaultErrors.badParameter('The value could not be decrypted with this key and algorithm.');
  if (ciphertext.length !== k) throw bad();
  try {
    if (alg === 'RSA1_5') {
      const em = privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, ciphertext);
      const out = pkcs1v15Unpad(em);
      if (!out) throw bad();
      return Buffer.from(out);
    }
    return privateDecrypt(
      {
        key,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: alg === 'RSA-OAEP-256' ? 'sha256' : 'sha1',
      },
      ciphertext,
    );
  } catch (e) {
    if (e instanceof EmulatedVaultRequestError) throw e;
    throw bad();
  }
}

/** MGF1 (RFC 8017 appendix B.2.1). */
function mgf1(seed: Buffer, length: number, hash: string): Buffer {
  const out: Buffer[] = [];
  let done = 0;
  for (let counter = 0; done < length; counter++) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter);
    const block = createHash(hash).update(seed).update(c).digest();
    out.push(block);
    done += block.length;
  }
  return Buffer.concat(out).subarray(0, length);
}

/** EMSA-PSS-ENCODE (RFC 8017 section 9.1.1) with a salt as long as the hash, over a given digest. */
function pssEncode(mHash: Buffer, emBits: number, hash: string): Buffer {
  const hLen = HASH_BYTES[hash]!;
  const emLen = Math.ceil(emBits / 8);
  const salt = randomBytes(hLen);
  const h = createHash(hash).update(Buffer.alloc(8)).update(mHash).update(salt).digest();
  const db = Buffer.concat([Buffer.alloc(emLen - 2 * hLen - 2), Buffer.from([1]), salt]);
  const mask = mgf1(h, db.length, hash);
  for (let i = 0; i < db.length; i++) db[i]! ^= mask[i]!;
  db[0]! &= 0xff >> (8 * emLen - emBits);
  return Buffer.concat([db, h, Buffer.from([0xbc])]);
}

/** EMSA-PSS-VERIFY (RFC 8017 section 9.1.2), salt length = hash length. */
function pssVerify(mHash: Buffer, em: Buffer, emBits: number, hash: string): boolean {
  const hLen = HASH_BYTES[hash]!;
  const emLen = Math.ceil(emBits / 8);
  if (em.length !== emLen || emLen < 2 * hLen + 2 || em[emLen - 1] !== 0xbc) return false;
  const db = Buffer.from(em.subarray(0, emLen - hLen - 1));
  const h = em.subarray(emLen - hLen - 1, emLen - 1);
  if ((db[0]! & ~(0xff >> (8 * emLen - emBits)) & 0xff) !== 0) return false;
  const mask = mgf1(h, db.length, hash);
  for (let i = 0; i < db.length; i++) db[i]! ^= mask[i]!;
  db[0]! &= 0xff >> (8 * emLen - emBits);
  const ps = emLen - 2 * hLen - 2;
  for (let i = 0; i < ps; i++) if (db[i] !== 0) return false;
  if (db[ps] !== 1) return false;
  const salt = db.subarray(db.length - hLen);
  const h2 = createHash(hash).update(Buffer.alloc(8)).update(mHash).update(salt).digest();
  return timingSafeEqual(h, h2);
}

function checkDigest(alg: string, digest: Buffer, bytes: number): void {
  if (digest.length !== bytes) {
    throw VaultErrors.badParameter(
      `The digest for ${alg} must be ${bytes} bytes: send the hash of the data, not the data.`,
    );
  }
}

function rsaSign(v: StoredVersion, alg: string, digest: Buffer): Buffer {
  const { hash, pss } = RSA_SIGN[alg]!;
  checkDigest(alg, digest, HASH_BYTES[hash]!);
  const key = rsaPrivate(v);
  if (!pss) {
    return privateEncrypt(
      { key, padding: constants.RSA_PKCS1_PADDING },
      Buffer.concat([DIGEST_INFO[hash]!, digest]),
    );
  }
  const modBits = key.asymmetricKeyDetails!.modulusLength!;
  const em = pssEncode(digest, modBits - 1, hash);
  const k = modulusBytes(key);
  const padded = Buffer.concat([Buffer.alloc(k - em.length), em]);
  return privateEncrypt({ key, padding: constants.RSA_NO_PADDING }, padded);
}

function rsaVerify(v: StoredVersion, alg: string, digest: Buffer, signature: Buffer): boolean {
  const { hash, pss } = RSA_SIGN[alg]!;
  checkDigest(alg, digest, HASH_BYTES[hash]!);
  const key = rsaPublic(v);
  if (signature.length !== modulusBytes(key)) return false;
  try {
    if (!pss) {
      const recovered = publicDecrypt({ key, padding: constants.RSA_PKCS1_PADDING }, signature);
      const expected = Buffer.concat([DIGEST_INFO[hash]!, digest]);
      return recovered.length === expected.length && timingSafeEqual(recovered, expected);
    }
    const modBits = key.asymmetricKeyDetails!.modulusLength!;
    const raw = publicDecrypt({ key, padding: constants.RSA_NO_PADDING }, signature);
    const emLen = Math.ceil((modBits - 1) / 8);
    if (raw.subarray(0, raw.length - emLen).some((b) => b !== 0)) return false;
    return pssVerify(digest, raw.subarray(raw.length - emLen), modBits - 1, hash);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// EC
// ---------------------------------------------------------------------------------------------------------

function ecCurve(v: StoredVersion, alg: string): (typeof NOBLE)[VaultCurve] {
  const want = EC_SIGN[alg]!.crv;
  if (v.material.crv !== want) {
    throw VaultErrors.badParameter(
      `Algorithm ${alg} needs a ${want} key; this key is ${v.material.crv ?? 'unknown'}.`,
    );
  }
  return NOBLE[want];
}

function ecSign(v: StoredVersion, alg: string, digest: Buffer): Buffer {
  const curve = ecCurve(v, alg);
  checkDigest(alg, digest, EC_SIGN[alg]!.digestBytes);
  const d = Buffer.from(v.material.jwk.d!, 'base64url');
  try {
    // r || s, each as long as the curve order: the JWS (RFC 7518 section 3.4) form Key Vault answers.
    return Buffer.from(curve.sign(digest, d, { prehash: false, lowS: false }).toCompactRawBytes());
  } finally {
    d.fill(0);
  }
}

function ecVerify(v: StoredVersion, alg: string, digest: Buffer, signature: Buffer): boolean {
  const curve = ecCurve(v, alg);
  checkDigest(alg, digest, EC_SIGN[alg]!.digestBytes);
  const x = Buffer.from(v.material.jwk.x!, 'base64url');
  const y = Buffer.from(v.material.jwk.y!, 'base64url');
  const publicKey = Buffer.concat([Buffer.from([4]), x, y]);
  try {
    return curve.verify(signature, digest, publicKey, { prehash: false, lowS: false, format: 'compact' });
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------
// AES (oct-HSM)
// ---------------------------------------------------------------------------------------------------------

function octKey(v: StoredVersion, alg: string, bytes: number): Buffer {
  const k = Buffer.from(v.material.jwk.k!, 'base64url');
  if (k.length !== bytes) {
    k.fill(0);
    throw keySizeMismatch(alg, bytes);
  }
  return k;
}

/** AES key wrap (RFC 3394) with its default IV. */
function aesKw(v: StoredVersion, alg: keyof typeof AES_KW, value: Buffer, wrap: boolean): Buffer {
  const bytes = AES_KW[alg];
  const k = octKey(v, alg, bytes);
  const iv = Buffer.from('a6a6a6a6a6a6a6a6', 'hex');
  const cipherName = `id-aes${bytes * 8}-wrap`;
  try {
    if (wrap) {
      if (value.length < 16 || value.length % 8 !== 0) {
        throw VaultErrors.badParameter(`${alg} wraps keys of 16 bytes or more in multiples of 8 bytes.`);
      }
      const c = createCipheriv(cipherName, k, iv);
      return Buffer.concat([c.update(value), c.final()]);
    }
    if (value.length < 24 || value.length % 8 !== 0) {
      throw VaultErrors.badParameter('The wrapped key is not an AES key wrap output.');
    }
    const d = createDecipheriv(cipherName, k, iv);
    return Buffer.concat([d.update(value), d.final()]);
  } catch (e) {
    if (e instanceof EmulatedVaultRequestError) throw e;
    throw VaultErrors.badParameter('The wrapped key failed its integrity check: wrong key or corrupted value.');
  } finally {
    k.fill(0);
  }
}

/**
 * AES-GCM. The service makes the IV (clients cannot send one: @azure/keyvault-keys
 * `cryptographyClient.js` initializeIV says "For AES-GCM the service **must** generate the IV"); its answer
 * has a 16-byte `iv` whose last 4 bytes are zero and a 16-byte `tag` (recorded in Azure/azure-sdk-for-js
 * `sdk/keyvault/keyvault-keys/recordings/node/cryptographyclient_for_managed_hsm_all_decrypts_happen_remotely_with_aes_crypto_algorithms/recording_encrypts_and_decrypts_using_aesgcm.js`:
 * iv "HOI5mYwDclJrTsgRAAAAAA", tag "WWiBimsoY-fvV60dl0m2ZQ"). The emulator draws a 12-byte nonce, answers
 * it padded the same way, and accepts either form back.
 */
function gcmNonce(iv: Buffer): Buffer {
  if (iv.length === 12) return iv;
  if (iv.length === 16 && iv.readUInt32BE(12) === 0) return iv.subarray(0, 12);
  throw VaultErrors.badParameter('iv must be the 12-byte nonce (or its 16-byte form) the encryption answered.');
}

function aesGcmEncrypt(v: StoredVersion, alg: keyof typeof AES_GCM, body: Json, value: Buffer): Json {
  if (body.iv !== undefined && body.iv !== null) {
    throw VaultErrors.badParameter(`${alg} makes its own iv: do not send one.`);
  }
  const aad = bytesField(body, 'aad', false);
  const k = octKey(v, alg, AES_GCM[alg]);
  const nonce = randomBytes(12);
  try {
    const c = createCipheriv(`aes-${k.length * 8}-gcm` as CipherGCMTypes, k, nonce, { authTagLength: 16 });
    if (aad) c.setAAD(aad);
    const out = Buffer.concat([c.update(value), c.final()]);
    return {
      value: out.toString('base64url'),
      iv: Buffer.concat([nonce, Buffer.alloc(4)]).toString('base64url'),
      tag: c.getAuthTag().toString('base64url'),
      ...(aad ? { aad: aad.toString('base64url') } : {}),
    };
  } finally {
    k.fill(0);
  }
}

function aesGcmDecrypt(v: StoredVersion, alg: keyof typeof AES_GCM, body: Json, value: Buffer): Json {
  const nonce = gcmNonce(bytesField(body, 'iv', true));
  const tag = bytesField(body, 'tag', true);
  if (tag.length !== 16) throw VaultErrors.badParameter('tag must be the 16-byte tag the encryption answered.');
  const aad = bytesField(body, 'aad', false);
  const k = octKey(v, alg, AES_GCM[alg]);
  try {
    const d = createDecipheriv(`aes-${k.length * 8}-gcm` as CipherGCMTypes, k, nonce, { authTagLength: 16 });
    d.setAuthTag(tag);
    if (aad) d.setAAD(aad);
    return { value: Buffer.concat([d.update(value), d.final()]).toString('base64url') };
  } catch {
    throw VaultErrors.badParameter('Decryption failed its integrity check: check iv, tag, aad and the key version.');
  } finally {
    k.fill(0);
  }
}

/**
 * AES-CBC without (A***CBC) and with PKCS#7 padding (A***CBCPAD). The client sends the 16-byte iv
 * (@azure/keyvault-keys AesCbcEncryptParameters.iv); when it sends none the emulator draws one and answers it.
 * A***CBCPAD matches the SDK's local AesCryptographyProvider (node's aes-*-cbc with its default padding), so a
 * value encrypted locally decrypts remotely and back.
 */
function aesCbc(
  v: StoredVersion,
  alg: string,
  bytes: number,
  pad: boolean,
  body: Json,
  value: Buffer,
  encrypt: boolean,
): Json {
  const given = bytesField(body, 'iv', !encrypt);
  const iv = given ?? randomBytes(16);
  if (iv.length !== 16) throw VaultErrors.badParameter('iv must be 16 bytes.');
  if (!pad && value.length % 16 !== 0) {
    throw VaultErrors.badParameter(`${alg} needs a value whose length is a multiple of 16 bytes; use ${alg}PAD.`);
  }
  const k = octKey(v, alg, bytes);
  try {
    const c = encrypt
      ? createCipheriv(`aes-${bytes * 8}-cbc`, k, iv)
      : createDecipheriv(`aes-${bytes * 8}-cbc`, k, iv);
    c.setAutoPadding(pad);
    const out = Buffer.concat([c.update(value), c.final()]);
    return encrypt
      ? { value: out.toString('base64url'), iv: iv.toString('base64url') }
      : { value: out.toString('base64url') };
  } catch {
    throw VaultErrors.badParameter('Decryption failed: check iv, the padding variant and the key version.');
  } finally {
    k.fill(0);
  }
}

// ---------------------------------------------------------------------------------------------------------
// dispatch
// ---------------------------------------------------------------------------------------------------------

function symmetric(v: StoredVersion, op: CryptoOperation, alg: string, body: Json, value: Buffer): Json {
  const kty = v.kty;
  if (op === 'wrapKey' || op === 'unwrapKey') {
    if (!(alg in AES_KW)) throw unsupported(alg, kty, op);
    const out = aesKw(v, alg as keyof typeof AES_KW, value, op === 'wrapKey');
    return { value: out.toString('base64url') };
  }
  if (op !== 'encrypt' && op !== 'decrypt') throw unsupported(alg, kty, op);
  if (alg in AES_GCM) {
    return op === 'encrypt'
      ? aesGcmEncrypt(v, alg as keyof typeof AES_GCM, body, value)
      : aesGcmDecrypt(v, alg as keyof typeof AES_GCM, body, value);
  }
  if (alg in AES_CBC) {
    return aesCbc(v, alg, AES_CBC[alg as keyof typeof AES_CBC], false, body, value, op === 'encrypt');
  }
  if (alg in AES_CBCPAD) {
    return aesCbc(v, alg, AES_CBCPAD[alg as keyof typeof AES_CBCPAD], true, body, value, op === 'encrypt');
  }
  throw unsupported(alg, kty, op);
}

function asymmetric(v: StoredVersion, op: CryptoOperation, alg: string, body: Json, value: Buffer): Json {
  const rsa = baseKty(v.kty) === 'RSA';
  switch (op) {
    case 'encrypt':
    case 'wrapKey':
      if (!rsa || !(RSA_ENCRYPTION as readonly string[]).includes(alg)) throw unsupported(alg, v.kty, op);
      return { value: rsaEncrypt(v, alg, value).toString('base64url') };
    case 'decrypt':
    case 'unwrapKey':
      if (!rsa || !(RSA_ENCRYPTION as readonly string[]).includes(alg)) throw unsupported(alg, v.kty, op);
      return { value: rsaDecrypt(v, alg, value).toString('base64url') };
    case 'sign':
      if (rsa && alg in RSA_SIGN) return { value: rsaSign(v, alg, value).toString('base64url') };
      if (!rsa && alg in EC_SIGN) return { value: ecSign(v, alg, value).toString('base64url') };
      throw unsupported(alg, v.kty, op);
    case 'verify': {
      const digest = bytesField(body, 'digest', true);
      if (rsa && alg in RSA_SIGN) return { value: rsaVerify(v, alg, digest, value) };
      if (!rsa && alg in EC_SIGN) return { value: ecVerify(v, alg, digest, value) };
      throw unsupported(alg, v.kty, op);
    }
  }
}

export interface CryptoContext {
  store: VaultStore;
  nowSeconds: () => number;
}

/** Runs one data-plane operation on `name`/`version` (current version when empty) and answers its body. */
export function runCryptoOperation(
  ctx: CryptoContext,
  name: string,
  version: string | undefined,
  op: CryptoOperation,
  body: unknown,
): Json {
  const { key, version: v } = ctx.store.resolve(name, version || undefined);
  if (!isObject(body)) throw VaultErrors.badParameter('The request body must be a JSON object.');
  checkKeyUsable(v, op, ctx.nowSeconds());
  if (typeof body.alg !== 'string' || body.alg.length === 0) {
    throw VaultErrors.badParameter('alg is required: name the algorithm.');
  }
  const alg = body.alg;
  const value = bytesField(body, 'value', true);
  const result = baseKty(v.kty) === 'oct' ? symmetric(v, op, alg, body, value) : asymmetric(v, op, alg, body, value);
  // verify answers only {value: boolean} (KeyVerifyResult); the others name the version they used.
  return op === 'verify' ? result : { kid: ctx.store.kid(key.name, v.version), ...result };
}
