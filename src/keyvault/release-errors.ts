/**
 * Why Key Vault refused a release, as a coded error: a pure function of the service's answer (a `RestError`
 * of @azure/core-rest-pipeline, or a network error), the key's state as read after the refusal, the token's
 * claims and the time. No I/O here: `SecureKeyRelease` reads the key's state (keys/get) only when
 * `refusalNeedsKeyState` says the explanation depends on it, and passes it in.
 */
import { type CvmSkrError, KeyVaultRequestError, KeyVersionUnavailableError, ReleaseDeniedError } from '../errors.js';
import type { KeyRef } from './key-id.js';
import { evaluateReleasePolicy, normalizeAuthority, parseReleasePolicy, type ReleasePolicy } from './release-policy.js';

/** The fields of a core-rest-pipeline `RestError` (or any thrown value) the explanation reads. */
export interface RestErrorLike {
  statusCode?: number;
  code?: string;
  message?: string;
}

/** What the vault says about the refused key version: its release policy and validity. */
export interface RefusedKeyState {
  /** The release policy, when it was readable and parsed. */
  policy?: ReleasePolicy;
  properties: { enabled?: boolean; expiresOn?: Date; notBefore?: Date; version?: string };
  /** The versioned key id the vault named, or the versionless one. */
  kid: string;
}

/** What the explanation is judged against. */
export interface RefusalContext {
  /** The attestation token's claims the release was asked with. */
  claims: Readonly<Record<string, unknown>>;
  /** The key's state, read after the refusal; absent when it could not be read (no keys/get). */
  keyState?: RefusedKeyState;
  /** The time key-version dates are judged by (`SecureKeyReleaseOptions.clock`). */
  now: Date;
}

function restFields(error: unknown): { statusCode?: number; serviceCode?: string; serviceMessage: string } {
  const rest = (typeof error === 'object' && error !== null ? error : {}) as RestErrorLike;
  return {
    ...(typeof rest.statusCode === 'number' ? { statusCode: rest.statusCode } : {}),
    ...(typeof rest.code === 'string' ? { serviceCode: rest.code } : {}),
    serviceMessage: typeof rest.message === 'string' ? rest.message : String(error),
  };
}

/**
 * A 403 that blames the caller's permission rather than the attestation: the service's message names a
 * permission ("does not have keys release permission", "ForbiddenByPolicy" of an access policy, "not
 * authorized" of RBAC) and does not talk about the attestation.
 */
function isPermissionRefusal(serviceMessage: string): boolean {
  return /permission|not authorized|forbiddenbypolicy/i.test(serviceMessage) && !/attestation/i.test(serviceMessage);
}

/** True when the refusal can only be explained with the key's state (a 403 about the attestation or policy). */
export function refusalNeedsKeyState(error: unknown): boolean {
  const { statusCode, serviceMessage } = restFields(error);
  return statusCode === 403 && !isPermissionRefusal(serviceMessage);
}

/** The key's state from what `KeyClient.getKey` returns; an unparsable release policy is left out. */
export function refusedKeyState(
  key: {
    id?: string;
    properties: RefusedKeyState['properties'] & { releasePolicy?: { encodedPolicy?: Uint8Array } };
  },
  ref: KeyRef,
): RefusedKeyState {
  const encoded = key.properties.releasePolicy?.encodedPolicy;
  let policy: ReleasePolicy | undefined;
  try {
    policy = encoded ? parseReleasePolicy(encoded) : undefined;
  } catch {
    policy = undefined;
  }
  return {
    ...(policy ? { policy } : {}),
    properties: key.properties,
    kid: key.id ?? `${ref.vaultUrl}/keys/${ref.name}`,
  };
}

/** A release refused because the key version is disabled or outside its validity, not because of the policy. */
export function keyVersionUnavailable(
  state: RefusedKeyState,
  ref: KeyRef,
  cause: unknown,
  now: Date,
): KeyVersionUnavailableError | undefined {
  const { properties, kid } = state;
  const version = properties.version ?? ref.version ?? '';
  const which = `version ${version || '(current)'} of key ${ref.name}`;
  const make = (reason: KeyVersionUnavailableError['reason'], message: string) =>
    new KeyVersionUnavailableError(`Key Vault refused to release ${which}: ${message}`, { kid, version, reason }, { cause });
  if (properties.enabled === false) return make('disabled', 'it is disabled; enable it, or release another version');
  if (properties.expiresOn && properties.expiresOn.getTime() <= now.getTime()) {
    return make('expired', `it expired on ${properties.expiresOn.toISOString()}; extend its expiry to release it`);
  }
  if (properties.notBefore && properties.notBefore.getTime() > now.getTime()) {
    return make('not-yet-valid', `it is not valid before ${properties.notBefore.toISOString()}`);
  }
  return undefined;
}

/**
 * The coded error for a failed `releaseKey` request: `ReleaseDeniedError` (403: missing permission, or the
 * policy not met, naming the failing clauses), `KeyVersionUnavailableError` (403 for a disabled, expired or not
 * yet valid version), or `KeyVaultRequestError` (any other status, or no answer at all). The service's error is
 * kept as `cause`.
 */
export function releaseRefusalError(error: unknown, ref: KeyRef, context: RefusalContext): CvmSkrError {
  const { statusCode: status, serviceCode, serviceMessage } = restFields(error);
  const service = serviceCode ? { serviceCode } : {};
  if (status === 403) {
    if (isPermissionRefusal(serviceMessage)) {
      return new ReleaseDeniedError(
        `Key Vault refused to release ${ref.name}: the caller lacks the keys/release permission (grant "Key Vault Crypto Service Release User"). Service said: ${serviceMessage}`,
        { statusCode: 403, reason: 'permission', ...service },
        { cause: error },
      );
    }
    const state = context.keyState;
    const unavailable = state && keyVersionUnavailable(state, ref, error, context.now);
    if (unavailable) return unavailable;
    const policy = state?.policy;
    const evaluation = policy ? evaluateReleasePolicy(policy, context.claims) : undefined;
    // Claim clauses matter only under an authority that is this token's issuer; with none, the issuer is the
    // reason (a key made for another attestation service, or a moved emulator), whatever the claims say.
    const iss = typeof context.claims.iss === 'string' ? context.claims.iss : undefined;
    const issuerPaths = (policy?.authorities ?? [])
      .map((a, i) => ({ a, path: `$.${policy!.kind}[${i}]` }))
      .filter(({ a }) => iss !== undefined && normalizeAuthority(a.authority) === normalizeAuthority(iss))
      .map(({ path }) => path);
    const failing =
      evaluation?.clauses.filter(
        (c) => !c.passed && c.kind === 'claim' && issuerPaths.some((p) => c.path.startsWith(`${p}.`)),
      ) ?? [];
    const explanation = evaluation
      ? issuerPaths.length === 0
        ? ` The token's issuer ${iss === undefined ? '(none)' : `"${iss}"`} is not the policy's authority (${policy!.authorities
            .map((a) => a.authority)
            .join(', ')}): attest with the attestation service the policy names (attestationEndpoint), or give the key a policy for this one.`
        : failing.length > 0
        ? ` Failing clause${failing.length > 1 ? 's' : ''}: ${failing.map((c) => `${c.path} (${c.claim}): ${c.reason}`).join('; ')}.`
        : evaluation.allowed
          ? ' Locally the policy passes on these claims: check the authority (attestation endpoint) and the token freshness.'
          : ` ${evaluation.clauses.find((c) => !c.passed)?.reason ?? ''}`
      : ' (the release policy could not be read to explain which clause failed; grant keys/get to see it)';
    return new ReleaseDeniedError(
      `Key Vault refused to release ${ref.name}: this machine's attestation does not satisfy the key's release policy.${explanation}`,
      {
        statusCode: 403,
        reason: 'policy',
        ...service,
        ...(policy ? { releasePolicy: policy } : {}),
        ...(evaluation ? { evaluation } : {}),
      },
      { cause: error },
    );
  }
  if (status !== undefined) {
    const advice =
      status === 404
        ? ' (check the key name and version)'
        : status === 401
          ? ' (check the credential and its tenant)'
          : status === 400
            ? ' (is the key exportable, with a release policy?)'
            : '';
    return new KeyVaultRequestError(
      `Key Vault answered HTTP ${status} to the release of ${ref.name}${advice}: ${serviceMessage}`,
      { statusCode: status, ...service },
      { cause: error },
    );
  }
  return new KeyVaultRequestError(`cannot reach Key Vault at ${ref.vaultUrl}: ${serviceMessage}`, {}, { cause: error });
}
