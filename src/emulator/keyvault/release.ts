/**
 * `POST /keys/{name}[/{version}]/release`: verify the attestation token, evaluate the key's release
 * policy against its claims, wrap the key material to the token's transfer key and answer `{value: JWS}`
 * signed by the vault's release-signing certificate. A refused release answers the service's single 403
 * body; the reason is kept in the vault's decision log for local debugging, never sent to the caller.
 *
 * The answer is shaped like the real ones of each flavour (test/fixtures/real-release/, recorded by
 * Azure/azure-sdk-for-js in sdk/keyvault/keyvault-keys/recordings/): header, `kid` derivation, `kty`, `e`
 * encoding, `release_policy` fields, and `request.kid` without a version when the call named none.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { CompactSign, type JWTPayload } from 'jose';
import { ReleaseDeniedError } from '../../errors.js';
import {
  DEFAULT_SERVICE_RELEASE_ENCRYPTION,
  isReleaseEncryption,
  type ReleaseEncryption,
  wrapForRelease,
} from '../../keyvault/key-wrap.js';
import {
  evaluateReleasePolicy,
  parseReleasePolicyData,
  type ReleasePolicyEvaluation,
} from '../../keyvault/release-policy.js';
import type { IssuedCertificate } from '../ca.js';
import type { AttestationVerifier } from './attestation-verifier.js';
import type { VaultFlavour } from './flavour.js';
import { publicJwkFields, releasableMaterial } from './key-material.js';
import type { VaultStore } from './store.js';
import { VaultErrors } from './vault-error.js';

export interface ReleaseDecision {
  at: string;
  key: string;
  version?: string;
  allowed: boolean;
  /** Why it was refused (or "released"); never contains token or key material. */
  reason: string;
  evaluation?: ReleasePolicyEvaluation;
}

/** A regular Key Vault, or a Managed HSM: their release answers differ in shape (see `shapeAnswer`). */

export interface ReleaseContext {
  store: VaultStore;
  verifier: AttestationVerifier;
  signer: () => Promise<IssuedCertificate>;
  now: () => Date;
  record: (d: ReleaseDecision) => void;
  /** Default `vault`. */
  flavour?: VaultFlavour;
}

type Json = Record<string, unknown>;

/** Object keys sorted, recursively: Managed HSM answers list fields alphabetically (mhsm-create-release.jws). */
function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((k) => [k, sortedKeys((value as Json)[k])]),
  );
}

/** A big-endian integer left-padded with zero bytes to at least `width` bytes ("AQAB" -> "AAEAAQ"). */
function padded(b64url: string, width: number): string {
  const bytes = Buffer.from(b64url, 'base64url');
  return bytes.length >= width
    ? b64url
    : Buffer.concat([Buffer.alloc(width - bytes.length), bytes]).toString('base64url');
}

/**
 * The per-flavour differences, as recorded (test/fixtures/real-release/):
 * - `kty`: a vault answers `RSA-HSM` (kv*-create-release.jws), a Managed HSM `RSA` for the same kind of key
 *   (mhsm-create-release.jws); EC keys follow the same pattern here (no recording); oct keys keep their type.
 * - `e`: a vault sends the exponent as 4 bytes, "AAEAAQ"; a Managed HSM as "AQAB".
 * - `release_policy`: a vault answers `{data, immutable}` (7.4, kv2022) and a Managed HSM `{contentType, data}`.
 * - field order: as the vault writes it; alphabetical on Managed HSM.
 */
function shapeAnswer(flavour: VaultFlavour, payload: Json & { response: { key: Json } }): Json {
  const key = payload.response.key;
  const jwk = key.key as Json;
  const policy = key.release_policy as Json;
  if (flavour === 'vault') {
    if (typeof jwk.e === 'string') jwk.e = padded(jwk.e, 4);
    if (jwk.kty === 'RSA' || jwk.kty === 'EC') jwk.kty = `${jwk.kty}-HSM`;
    key.release_policy = { data: policy.data, immutable: policy.immutable === true };
    return payload;
  }
  if (jwk.kty === 'RSA-HSM' || jwk.kty === 'EC-HSM') jwk.kty = (jwk.kty as string).slice(0, -4);
  key.release_policy = { contentType: policy.contentType, data: policy.data };
  return sortedKeys(payload) as Json;
}

/**
 * The JWS header of each flavour: a vault's `{alg, kid: uppercase hex SHA-1 of the leaf, x5t, typ: "JWT",
 * x5t#S256, x5c}` (kv*-create-release.jws), a Managed HSM's `{alg, kid: x5t#S256, x5c, x5t#S256}`.
 */
function headerFor(flavour: VaultFlavour, cert: IssuedCertificate) {
  if (flavour === 'managedhsm') {
    return { alg: 'RS256', kid: cert.x5tS256, x5c: cert.x5c, 'x5t#S256': cert.x5tS256 };
  }
  return {
    alg: 'RS256',
    kid: createHash('sha1').update(cert.certDer).digest('hex').toUpperCase(),
    x5t: cert.x5t,
    typ: 'JWT',
    'x5t#S256': cert.x5tS256,
    x5c: cert.x5c,
  };
}

/** The first RSA key of top-level `x-ms-runtime.keys` usable for encryption. */
export function pickTransferKey(claims: JWTPayload): { kid: string; key: KeyObject } {
  const runtime = claims['x-ms-runtime'];
  const keys = typeof runtime === 'object' && runtime !== null ? (runtime as Json).keys : undefined;
  if (!Array.isArray(keys)) throw new ReleaseDeniedError('token has no x-ms-runtime.keys');
  for (const k of keys) {
    if (typeof k !== 'object' || k === null) continue;
    const jwk = k as Json;
    const ops = Array.isArray(jwk.key_ops) ? jwk.key_ops : [];
    const usable = ops.includes('encrypt') || jwk.key_use === 'enc' || jwk.use === 'enc';
    if (jwk.kty !== 'RSA' || !usable || typeof jwk.n !== 'string' || typeof jwk.e !== 'string') continue;
    try {
      const key = createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e }, format: 'jwk' });
      return { kid: typeof jwk.kid === 'string' ? jwk.kid : '', key };
    } catch {
      throw new ReleaseDeniedError('transfer key in x-ms-runtime.keys is not a valid RSA key');
    }
  }
  throw new ReleaseDeniedError('token has no RSA encryption key in x-ms-runtime.keys');
}

export async function releaseKey(
  ctx: ReleaseContext,
  name: string,
  version: string | undefined,
  body: unknown,
  apiVersion: string,
): Promise<Json> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw VaultErrors.badParameter('The request body must be a JSON object.');
  }
  const req = body as Json;
  if (typeof req.target !== 'string' || req.target.length === 0) {
    throw VaultErrors.badParameter('target (the attestation token) is required.');
  }
  if (req.nonce !== undefined && req.nonce !== null && typeof req.nonce !== 'string') {
    throw VaultErrors.badParameter('nonce must be a string.');
  }
  const encValue = req.enc ?? DEFAULT_SERVICE_RELEASE_ENCRYPTION;
  if (!isReleaseEncryption(encValue)) {
    throw VaultErrors.badParameter(
      'enc must be CKM_RSA_AES_KEY_WRAP, RSA_AES_KEY_WRAP_256 or RSA_AES_KEY_WRAP_384.',
    );
  }
  const enc: ReleaseEncryption = encValue;
  const { key, version: v } = ctx.store.resolve(name, version);
  const decision = (allowed: boolean, reason: string, evaluation?: ReleasePolicyEvaluation) =>
    ctx.record({
      at: ctx.now().toISOString(),
      key: key.name,
      version: v.version,
      allowed,
      reason,
      ...(evaluation ? { evaluation } : {}),
    });
  if (!v.exportable || !v.releasePolicy) {
    decision(false, 'key is not exportable');
    throw VaultErrors.badParameter('The key is not exportable and cannot be released.');
  }
  if (!v.enabled) {
    decision(false, 'key is disabled');
    throw VaultErrors.forbidden('Operation release is not allowed on a disabled key.');
  }
  const nowSec = Math.floor(ctx.now().getTime() / 1000);
  if ((v.nbf !== undefined && nowSec < v.nbf) || (v.exp !== undefined && nowSec >= v.exp)) {
    decision(false, 'key is not yet valid or has expired');
    throw VaultErrors.forbidden('Operation release is not allowed on a key outside its validity period.');
  }

  let claims: JWTPayload;
  let transfer: { kid: string; key: KeyObject };
  let evaluation: ReleasePolicyEvaluation | undefined;
  try {
    claims = await ctx.verifier.verify(req.target);
    evaluation = evaluateReleasePolicy(parseReleasePolicyData(v.releasePolicy.data), claims);
    if (!evaluation.allowed) throw new ReleaseDeniedError('release policy is not satisfied');
    transfer = pickTransferKey(claims);
  } catch (cause) {
    decision(false, cause instanceof ReleaseDeniedError ? cause.message : 'release check failed', evaluation);
    throw VaultErrors.releaseDenied();
  }

  const material = releasableMaterial(v.kty, v.material);
  let keyHsm: string;
  try {
    keyHsm = wrapForRelease({ transferKey: transfer.key, transferKid: transfer.kid, enc, material });
  } catch {
    decision(false, 'transfer key cannot wrap the key', evaluation);
    throw VaultErrors.releaseDenied();
  } finally {
    material.fill(0);
  }
  const kid = ctx.store.kid(key.name, v.version);
  const flavour = ctx.flavour ?? 'vault';
  const payload = {
    request: {
      'api-version': apiVersion,
      enc,
      // The key id as the call named it: without a version for a versionless release (real answers).
      kid: ctx.store.kid(key.name, version ? v.version : undefined),
      ...(typeof req.nonce === 'string' ? { nonce: req.nonce } : {}),
    },
    response: {
      key: {
        key: {
          kid,
          kty: v.kty,
          key_ops: [...v.keyOps],
          ...publicJwkFields(v.kty, v.material),
          key_hsm: keyHsm,
        },
        attributes: ctx.store.attributesJson(v),
        ...(v.tags ? { tags: { ...v.tags } } : {}),
        release_policy: { ...v.releasePolicy },
      },
    },
  };
  const cert = await ctx.signer();
  const jws = await new CompactSign(Buffer.from(JSON.stringify(shapeAnswer(flavour, payload)), 'utf8'))
    .setProtectedHeader(headerFor(flavour, cert))
    .sign(cert.privateKey);
  decision(true, 'released', evaluation);
  return { value: jws };
}
