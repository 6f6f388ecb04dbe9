/**
 * What crosses the agent's local socket: errors as `{ code, name, message, details }` that the client turns
 * back into the same class (so `instanceof` and `code` work as in-process), and released keys as JWK (the
 * private or secret key itself: only ever sent over the Unix socket or the token-guarded loopback port).
 */
import { createPrivateKey, createSecretKey, type KeyObject } from 'node:crypto';
import type { Jwk } from '../util/jwk.js';
import * as errors from '../errors.js';
import { CvmSkrError, MalformedDataError } from '../errors.js';
import type { ReleasedKey, ReleasedKeyAttributes } from '../keyvault/secure-key-release.js';

/** Default socket path of `cvm-skr agent` (systemd's RuntimeDirectory=cvm-skr). */
export const DEFAULT_AGENT_SOCKET = '/run/cvm-skr/agent.sock';
/** Environment variable naming the agent socket; when set, `new SecureKeyRelease()` uses the agent. */
export const AGENT_SOCKET_ENV = 'CVM_SKR_AGENT_SOCKET';

export interface WireError {
  code: string;
  name: string;
  message: string;
  /** The class's own fields (statusCode, reason, evaluation, ...): JSON values only, never a cause. */
  details?: Record<string, unknown>;
}

const OMITTED = new Set(['name', 'message', 'code', 'stack', 'cause']);

/** An error as the agent sends it. Errors that are not ours become a plain `ERR_CVM_SKR` with no detail. */
export function errorToWire(error: unknown): WireError {
  if (!(error instanceof CvmSkrError)) {
    return { code: CvmSkrError.code, name: 'CvmSkrError', message: 'the agent failed unexpectedly; see its log' };
  }
  const details: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(error)) {
    if (OMITTED.has(field) || value === undefined) continue;
    try {
      // Only what survives JSON (the same fields a caller would log); functions and cycles are dropped.
      details[field] = JSON.parse(JSON.stringify(value));
    } catch {
      // not JSON-serialisable: left out
    }
  }
  return {
    code: error.code,
    name: error.name,
    message: error.message,
    ...(Object.keys(details).length > 0 ? { details } : {}),
  };
}

type ErrorClass = typeof CvmSkrError;
const ERROR_CLASSES = Object.values(errors).filter(
  (v): v is ErrorClass => typeof v === 'function' && v.prototype instanceof Error && 'code' in v,
);
const BY_NAME: ReadonlyMap<string, ErrorClass> = new Map(ERROR_CLASSES.map((c) => [c.name, c] as const));
const BY_CODE: ReadonlyMap<string, ErrorClass> = new Map(ERROR_CLASSES.map((c) => [c.code, c] as const));

/**
 * The error class the wire names, made without running its constructor (each class has its own signature): the
 * prototype chain, `name`, `code` and fields are those of the in-process error. The class is found by name,
 * since one class may carry several codes (an `EvidenceVerificationError` says which check failed in `code`).
 */
export function errorFromWire(wire: unknown, origin: string): CvmSkrError {
  const w = (typeof wire === 'object' && wire !== null ? wire : {}) as Partial<WireError>;
  const Class =
    (typeof w.name === 'string' && BY_NAME.get(w.name)) ||
    (typeof w.code === 'string' && BY_CODE.get(w.code)) ||
    CvmSkrError;
  const code = typeof w.code === 'string' && /^ERR_[A-Z0-9_]{1,60}$/.test(w.code) ? w.code : Class.code;
  const message = typeof w.message === 'string' ? w.message : `the agent at ${origin} answered an unknown error`;
  const error = Reflect.construct(Error, [message], Class) as CvmSkrError;
  Object.defineProperty(error, 'name', { value: Class.name, writable: true, configurable: true });
  Object.defineProperty(error, 'code', { value: code, enumerable: true, configurable: true });
  if (typeof w.details === 'object' && w.details !== null) {
    for (const [field, value] of Object.entries(w.details)) {
      if (!OMITTED.has(field)) (error as unknown as Record<string, unknown>)[field] = value;
    }
  }
  return error;
}

export interface WireKey {
  kid: string;
  name: string;
  version: string;
  keyType: string;
  jwk: Jwk;
  attributes: Record<string, unknown>;
  releasePolicy?: unknown;
  releasedAt: string;
}

export function keyToWire(key: ReleasedKey): WireKey {
  const attributes: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(key.attributes)) {
    attributes[field] = value instanceof Date ? value.toISOString() : value;
  }
  return {
    kid: key.kid,
    name: key.name,
    version: key.version,
    keyType: key.keyType,
    jwk: key.key.export({ format: 'jwk' }),
    attributes,
    ...(key.releasePolicy !== undefined ? { releasePolicy: key.releasePolicy } : {}),
    releasedAt: key.releasedAt.toISOString(),
  };
}

const DATE_FIELDS = ['createdOn', 'updatedOn', 'notBefore', 'expiresOn'] as const;

export function keyFromWire(wire: unknown): ReleasedKey {
  const w = wire as Partial<WireKey> | null;
  if (!w || typeof w !== 'object' || typeof w.kid !== 'string' || typeof w.jwk !== 'object' || w.jwk === null)
    throw new MalformedDataError('ERR_AGENT_ANSWER_MALFORMED', 'the agent answered a key without kid or jwk; is it a cvm-skr agent?');
  let key: KeyObject;
  try {
    key =
      w.jwk.kty === 'oct'
        ? createSecretKey(Buffer.from(String(w.jwk.k), 'base64url'))
        : createPrivateKey({ key: w.jwk, format: 'jwk' });
  } catch (error) {
    throw new MalformedDataError('ERR_AGENT_ANSWER_MALFORMED', 'the agent answered a key that does not import as a JWK', { cause: error });
  }
  const attributes: ReleasedKeyAttributes = {};
  const raw = (w.attributes ?? {}) as Record<string, unknown>;
  if (typeof raw.enabled === 'boolean') attributes.enabled = raw.enabled;
  if (typeof raw.exportable === 'boolean') attributes.exportable = raw.exportable;
  if (typeof raw.recoveryLevel === 'string') attributes.recoveryLevel = raw.recoveryLevel;
  for (const field of DATE_FIELDS) if (typeof raw[field] === 'string') attributes[field] = new Date(raw[field]);
  return {
    kid: w.kid,
    name: String(w.name),
    version: String(w.version),
    keyType: String(w.keyType),
    key,
    attributes,
    ...(w.releasePolicy !== undefined ? { releasePolicy: w.releasePolicy as ReleasedKey['releasePolicy'] } : {}),
    releasedAt: new Date(String(w.releasedAt)),
  };
}
