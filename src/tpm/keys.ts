import { createPublicKey, type KeyObject } from 'node:crypto';
import { MalformedDataError } from '../errors.js';
import { TPM_ALG, TPM_ECC_CURVE } from './constants.js';
import type { TpmtPublic } from './structures.js';

export interface RsaPublicJwk {
  kty: 'RSA';
  n: string;
  e: string;
}

export interface EcPublicJwk {
  kty: 'EC';
  crv: 'P-256' | 'P-384' | 'P-521';
  x: string;
  y: string;
}

const CURVES: Record<number, { crv: EcPublicJwk['crv']; size: number }> = {
  [TPM_ECC_CURVE.NIST_P256]: { crv: 'P-256', size: 32 },
  [TPM_ECC_CURVE.NIST_P384]: { crv: 'P-384', size: 48 },
  [TPM_ECC_CURVE.NIST_P521]: { crv: 'P-521', size: 66 },
};

function exponentBytes(exponent: number): Buffer {
  const e = exponent === 0 ? 65537 : exponent;
  const b = Buffer.alloc(4);
  b.writeUInt32BE(e);
  let i = 0;
  while (i < 3 && b[i] === 0) i++;
  return b.subarray(i);
}

function leftPad(bytes: Uint8Array, size: number): Buffer {
  if (bytes.length > size)
    throw new MalformedDataError('ERR_TPM_MALFORMED', `ECC coordinate of ${bytes.length} bytes is too long`);
  const out = Buffer.alloc(size);
  out.set(bytes, size - bytes.length);
  return out;
}

/** The public key of a TPM public area as a JWK (RSA exponent 0 means 65537). */
export function publicToJwk(pub: TpmtPublic): RsaPublicJwk | EcPublicJwk {
  if (pub.type === TPM_ALG.RSA) {
    if (pub.unique.length === 0) throw new MalformedDataError('ERR_TPM_MALFORMED', 'RSA public area has no modulus');
    return {
      kty: 'RSA',
      n: Buffer.from(pub.unique.buffer, pub.unique.byteOffset, pub.unique.length).toString('base64url'),
      e: exponentBytes(pub.exponent).toString('base64url'),
    };
  }
  const curve = CURVES[pub.curveId];
  if (!curve) {
    throw new MalformedDataError('ERR_TPM_MALFORMED', `ECC curve 0x${pub.curveId.toString(16)} is not supported`);
  }
  return {
    kty: 'EC',
    crv: curve.crv,
    x: leftPad(pub.unique.x, curve.size).toString('base64url'),
    y: leftPad(pub.unique.y, curve.size).toString('base64url'),
  };
}

/** The public key of a TPM public area as a node:crypto KeyObject. */
export function publicToKeyObject(pub: TpmtPublic): KeyObject {
  try {
    return createPublicKey({ key: { ...publicToJwk(pub) }, format: 'jwk' });
  } catch (error) {
    if (error instanceof MalformedDataError && error.code === 'ERR_TPM_MALFORMED') throw error;
    throw new MalformedDataError('ERR_TPM_MALFORMED', 'TPM public area does not hold a usable public key', {
      cause: error,
    });
  }
}
