/**
 * Key material of emulated vault keys: generation, import checks, the public JWK the REST API shows, and
 * the bytes a release wraps (PKCS#8 DER for RSA and EC, raw bytes for oct).
 */
import { createPrivateKey, generateKeyPair, randomBytes } from 'node:crypto';
import type { Jwk } from '../../util/jwk.js';
import { promisify } from 'node:util';
import { EmulatedVaultRequestError } from '../errors.js';
import { VaultErrors } from './vault-error.js';

const generateKeyPairAsync = promisify(generateKeyPair);

export const KEY_TYPES = ['RSA', 'RSA-HSM', 'EC', 'EC-HSM', 'oct-HSM'] as const;
export type VaultKeyType = (typeof KEY_TYPES)[number];
export const RSA_KEY_SIZES = [2048, 3072, 4096] as const;
export const OCT_KEY_SIZES = [128, 192, 256] as const;
export const CURVES = ['P-256', 'P-384', 'P-521', 'P-256K'] as const;
export type VaultCurve = (typeof CURVES)[number];
export const KEY_OPERATIONS = [
  'encrypt',
  'decrypt',
  'sign',
  'verify',
  'wrapKey',
  'unwrapKey',
  'import',
  'export',
] as const;

const NODE_CURVE: Record<VaultCurve, string> = {
  'P-256': 'prime256v1',
  'P-384': 'secp384r1',
  'P-521': 'secp521r1',
  'P-256K': 'secp256k1',
};

/** JWK curve names as node exports them, mapped back to Key Vault names. */
const CURVE_FROM_JWK: Record<string, VaultCurve> = {
  'P-256': 'P-256',
  'P-384': 'P-384',
  'P-521': 'P-521',
  secp256k1: 'P-256K',
  'P-256K': 'P-256K',
};

export function isKeyType(v: unknown): v is VaultKeyType {
  return typeof v === 'string' && (KEY_TYPES as readonly string[]).includes(v);
}

export function baseKty(kty: VaultKeyType): 'RSA' | 'EC' | 'oct' {
  return kty.startsWith('RSA') ? 'RSA' : kty.startsWith('EC') ? 'EC' : 'oct';
}

/** Operations a new key gets when the request names none (what the service answers). */
export function defaultKeyOps(kty: VaultKeyType): string[] {
  switch (baseKty(kty)) {
    case 'RSA':
      return ['encrypt', 'decrypt', 'sign', 'verify', 'wrapKey', 'unwrapKey'];
    case 'EC':
      return ['sign', 'verify'];
    default:
      return ['encrypt', 'decrypt', 'wrapKey', 'unwrapKey'];
  }
}

export function checkKeyOps(ops: unknown): string[] {
  if (!Array.isArray(ops)) throw VaultErrors.badParameter('key_ops must be an array of key operations.');
  for (const op of ops) {
    if (typeof op !== 'string' || !(KEY_OPERATIONS as readonly string[]).includes(op)) {
      throw VaultErrors.badParameter(`Invalid key operation: ${String(op).slice(0, 40)}.`);
    }
  }
  return [...new Set(ops as string[])];
}

/** Private key material as a JWK (node format), plus the size/curve the REST API reports. */
export interface KeyMaterial {
  jwk: Jwk;
  keySize?: number;
  crv?: VaultCurve;
}

export interface GenerateKeyRequest {
  kty: VaultKeyType;
  keySize?: number;
  publicExponent?: number;
  crv?: string;
}

export async function generateKeyMaterial(req: GenerateKeyRequest): Promise<KeyMaterial> {
  switch (baseKty(req.kty)) {
    case 'RSA': {
      const size = req.keySize ?? 2048;
      if (!(RSA_KEY_SIZES as readonly number[]).includes(size)) {
        throw VaultErrors.badParameter(`Invalid key size ${size} for ${req.kty}; use 2048, 3072 or 4096.`);
      }
      const e = req.publicExponent ?? 65537;
      if (e !== 65537 && e !== 3) throw VaultErrors.badParameter('public_exponent must be 65537.');
      const { privateKey } = await generateKeyPairAsync('rsa', { modulusLength: size, publicExponent: e });
      return { jwk: privateKey.export({ format: 'jwk' }), keySize: size };
    }
    case 'EC': {
      if (req.keySize !== undefined) throw VaultErrors.badParameter('key_size is not valid for EC keys.');
      const crv = (req.crv ?? 'P-256') as VaultCurve;
      if (!(CURVES as readonly string[]).includes(crv)) {
        throw VaultErrors.badParameter(`Invalid curve ${String(req.crv).slice(0, 20)}.`);
      }
      const { privateKey } = await generateKeyPairAsync('ec', { namedCurve: NODE_CURVE[crv] });
      return { jwk: privateKey.export({ format: 'jwk' }), crv };
    }
    default: {
      const size = req.keySize ?? 256;
      if (!(OCT_KEY_SIZES as readonly number[]).includes(size)) {
        throw VaultErrors.badParameter(`Invalid key size ${size} for oct-HSM; use 128, 192 or 256.`);
      }
      const k = randomBytes(size / 8);
      const jwk: Jwk = { kty: 'oct', k: k.toString('base64url') };
      k.fill(0);
      return { jwk, keySize: size };
    }
  }
}

const B64URL = /^[A-Za-z0-9_-]+$/;

/** Checks a JWK sent to import and returns the key type it will be stored as. */
export function importKeyMaterial(key: unknown, hsm: boolean): { kty: VaultKeyType; material: KeyMaterial } {
  if (typeof key !== 'object' || key === null) throw VaultErrors.badParameter('key must be a JSON web key.');
  const jwk = key as Record<string, unknown>;
  const kty = jwk.kty;
  if (kty === 'oct' || kty === 'oct-HSM') {
    if (typeof jwk.k !== 'string' || !B64URL.test(jwk.k)) {
      throw VaultErrors.badParameter('oct keys need k (base64url).');
    }
    const bits = Buffer.from(jwk.k, 'base64url').length * 8;
    if (!(OCT_KEY_SIZES as readonly number[]).includes(bits)) {
      throw VaultErrors.badParameter(`Invalid oct key size ${bits}; use 128, 192 or 256 bits.`);
    }
    return { kty: 'oct-HSM', material: { jwk: { kty: 'oct', k: jwk.k }, keySize: bits } };
  }
  const base =
    kty === 'RSA' || kty === 'RSA-HSM' ? 'RSA' : kty === 'EC' || kty === 'EC-HSM' ? 'EC' : undefined;
  if (!base) throw VaultErrors.badParameter(`Invalid kty ${String(kty).slice(0, 20)}.`);
  if (typeof jwk.d !== 'string')
    throw VaultErrors.badParameter('The key to import must include its private part.');
  const fields = base === 'RSA' ? ['n', 'e', 'd', 'p', 'q', 'dp', 'dq', 'qi'] : ['x', 'y', 'd'];
  const clean: Jwk = { kty: base };
  for (const f of fields) {
    const v = jwk[f];
    if (v === undefined) continue;
    if (typeof v !== 'string' || !B64URL.test(v))
      throw VaultErrors.badParameter(`JWK field ${f} is not base64url.`);
    clean[f] = v;
  }
  if (base === 'EC') {
    const crv = CURVE_FROM_JWK[String(jwk.crv)];
    if (!crv) throw VaultErrors.badParameter(`Invalid curve ${String(jwk.crv).slice(0, 20)}.`);
    clean.crv = crv === 'P-256K' ? 'secp256k1' : crv;
  }
  let keySize: number | undefined;
  let crv: VaultCurve | undefined;
  try {
    const k = createPrivateKey({ key: clean, format: 'jwk' });
    if (base === 'RSA') {
      keySize = k.asymmetricKeyDetails?.modulusLength;
      if (!keySize || !(RSA_KEY_SIZES as readonly number[]).includes(keySize)) {
        throw VaultErrors.badParameter(`Invalid RSA key size ${keySize}; use 2048, 3072 or 4096.`);
      }
    } else {
      crv = CURVE_FROM_JWK[String(jwk.crv)];
    }
  } catch (cause) {
    if (cause instanceof EmulatedVaultRequestError) throw cause;
    throw VaultErrors.badParameter('The key to import is not a valid private key.');
  }
  const hsmType = hsm || (typeof kty === 'string' && kty.endsWith('-HSM'));
  const vaultKty = (hsmType ? `${base}-HSM` : base) as VaultKeyType;
  return {
    kty: vaultKty,
    material: { jwk: clean, ...(keySize ? { keySize } : {}), ...(crv ? { crv } : {}) },
  };
}

/** The public half as the REST API shows it (no private or symmetric parts). */
export function publicJwkFields(kty: VaultKeyType, m: KeyMaterial): Record<string, string> {
  switch (baseKty(kty)) {
    case 'RSA':
      return { n: m.jwk.n!, e: m.jwk.e! };
    case 'EC':
      return { crv: m.crv ?? CURVE_FROM_JWK[String(m.jwk.crv)] ?? 'P-256', x: m.jwk.x!, y: m.jwk.y! };
    default:
      return {};
  }
}

/** The bytes a release wraps. The caller zeroes the returned buffer. */
export function releasableMaterial(kty: VaultKeyType, m: KeyMaterial): Buffer {
  if (baseKty(kty) === 'oct') return Buffer.from(m.jwk.k!, 'base64url');
  return createPrivateKey({ key: m.jwk, format: 'jwk' }).export({ format: 'der', type: 'pkcs8' });
}
