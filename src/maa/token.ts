/**
 * Attestation token verification with jose (MicrosoftDocs/azure-security-docs articles/attestation/
 * claim-sets.md and the service's OpenID metadata, `{endpoint}/.well-known/openid-configuration`): RS256 only; `iss` must be the configured
 * endpoint (a trailing slash is ignored); keys come only from that endpoint's host (`/certs`, or the
 * `jwks_uri` of its OpenID metadata when on the same origin), never from a `jku` elsewhere; `exp`/`nbf` with a
 * small skew; an unknown `kid` refetches the keys once.
 */
import type { KeyObject } from 'node:crypto';
import type { errors as JoseErrors, importJWK, JWTPayload } from 'jose';
import { AttestationRequestError, AttestationTokenError, InvalidArgumentError } from '../errors.js';
import { loadJose } from '../load-jose.js';
import { httpsRequest, jsonAnswer, type MaaHttpOptions } from './http.js';

/** Allowed clock skew for `exp` and `nbf`. */
export const TOKEN_CLOCK_SKEW_SECONDS = 60;

export interface TokenVerifierOptions extends MaaHttpOptions {
  /** The attestation endpoint, e.g. `https://sharedeus.eus.attest.azure.net`. */
  endpoint: string;
  /** Clock for `exp`/`nbf`. */
  now?: () => Date;
  clockSkewSeconds?: number;
}

type Jwk = Record<string, unknown>;
type VerifyKey = Awaited<ReturnType<typeof importJWK>> | KeyObject;

/** The endpoint as an origin-only https URL string, without a trailing slash. */
export function normalizeEndpoint(endpoint: string): URL {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new InvalidArgumentError(`attestation endpoint ${JSON.stringify(endpoint)} is not a URL`);
  }
  if (url.protocol !== 'https:') throw new InvalidArgumentError('the attestation endpoint must be https');
  if (url.search || url.hash || url.username || url.password) {
    throw new InvalidArgumentError(
      'the attestation endpoint must not carry a query, fragment or credentials',
    );
  }
  return url;
}

/** Origin and path of the endpoint, without a trailing slash. */
export function baseOf(url: URL): string {
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

export class AttestationTokenVerifier {
  readonly endpoint: URL;
  readonly #options: TokenVerifierOptions;
  #keys: Promise<Jwk[]> | undefined;

  constructor(options: TokenVerifierOptions) {
    this.endpoint = normalizeEndpoint(options.endpoint);
    this.#options = options;
  }

  async #fetchKeys(): Promise<Jwk[]> {
    const base = baseOf(this.endpoint);
    const http = { ...this.#options, method: 'GET' as const };
    let jwksUri = new URL(`${base}/certs`);
    try {
      const meta = jsonAnswer(
        await httpsRequest(new URL(`${base}/.well-known/openid-configuration`), http),
        'the OpenID metadata endpoint',
      );
      if (typeof meta.jwks_uri === 'string') {
        const uri = new URL(meta.jwks_uri);
        if (uri.origin === this.endpoint.origin) jwksUri = uri;
      }
    } catch (error) {
      if (!(error instanceof AttestationRequestError)) throw error;
      // No usable metadata: the service also serves its keys at {endpoint}/certs.
    }
    const jwks = jsonAnswer(await httpsRequest(jwksUri, http), 'the signing keys endpoint');
    if (!Array.isArray(jwks.keys)) throw new AttestationTokenError(
      'ERR_ATTESTATION_TOKEN_KEY',
      `${jwksUri.href} has no "keys" list`,
    );
    return jwks.keys.filter((k): k is Jwk => typeof k === 'object' && k !== null && !Array.isArray(k));
  }

  #keysOnce(refresh: boolean): Promise<Jwk[]> {
    if (refresh || this.#keys === undefined) {
      const pending = this.#fetchKeys();
      this.#keys = pending;
      pending.catch(() => {
        if (this.#keys === pending) this.#keys = undefined;
      });
    }
    return this.#keys as Promise<Jwk[]>;
  }

  async #key(kid: string | undefined): Promise<VerifyKey> {
    const pick = (keys: Jwk[]) =>
      kid === undefined ? (keys.length === 1 ? keys[0] : undefined) : keys.find((k) => k.kid === kid);
    let jwk = pick(await this.#keysOnce(false));
    if (jwk === undefined) jwk = pick(await this.#keysOnce(true));
    if (jwk === undefined) {
      throw new AttestationTokenError(
        'ERR_ATTESTATION_TOKEN_KEY',
        kid === undefined
          ? 'the token names no kid and the service has more than one key'
          : `the service at ${this.endpoint.host} has no key with the token's kid`,
      );
    }
    const { importJWK, importX509 } = await loadJose();
    try {
      if (typeof jwk.n === 'string' && typeof jwk.e === 'string') {
        return await importJWK({ kty: 'RSA', n: jwk.n, e: jwk.e }, 'RS256');
      }
      const x5c = jwk.x5c;
      if (Array.isArray(x5c) && typeof x5c[0] === 'string') {
        const body = x5c[0].replace(/(.{64})/g, '$1\n');
        return await importX509(`-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----`, 'RS256');
      }
    } catch (error) {
      throw new AttestationTokenError(
        'ERR_ATTESTATION_TOKEN_KEY',
        'the service key for the token is not a usable RSA key',
        { cause: error },
      );
    }
    throw new AttestationTokenError(
      'ERR_ATTESTATION_TOKEN_KEY',
      'the service key for the token has neither n/e nor x5c',
    );
  }

  /** Verifies a token and returns its claims; throws an `AttestationTokenError` whose code says why. */
  async verify(token: string): Promise<JWTPayload> {
    if (typeof token !== 'string' || token.length > 512 * 1024 || token.split('.').length !== 3) {
      throw new AttestationTokenError('ERR_ATTESTATION_TOKEN_MALFORMED', 'the attestation token is not a compact JWS');
    }
    const { decodeProtectedHeader, errors, jwtVerify } = await loadJose();
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch (error) {
      throw new AttestationTokenError(
        'ERR_ATTESTATION_TOKEN_MALFORMED',
        'the attestation token header is not JSON',
        { cause: error },
      );
    }
    if (header.alg !== 'RS256') {
      throw new AttestationTokenError(
        'ERR_ATTESTATION_TOKEN_ALGORITHM',
        `token alg ${JSON.stringify(header.alg)} is not RS256`,
      );
    }
    if (header.jku !== undefined) {
      let jku: URL | undefined;
      try {
        jku = new URL(String(header.jku));
      } catch {
        jku = undefined;
      }
      if (jku === undefined || jku.origin !== this.endpoint.origin) {
        throw new AttestationTokenError(
          'ERR_ATTESTATION_TOKEN_KEY',
          `the token's jku points away from ${this.endpoint.host}; keys are only taken from the configured endpoint`,
        );
      }
    }
    const key = await this.#key(typeof header.kid === 'string' ? header.kid : undefined);
    const base = baseOf(this.endpoint);
    try {
      const { payload } = await jwtVerify(token, key, {
        algorithms: ['RS256'],
        issuer: [base, `${base}/`],
        clockTolerance: this.#options.clockSkewSeconds ?? TOKEN_CLOCK_SKEW_SECONDS,
        requiredClaims: ['exp', 'iss'],
        ...(this.#options.now ? { currentDate: this.#options.now() } : {}),
      });
      return payload;
    } catch (error) {
      throw mapJoseError(error, this.endpoint.host, errors);
    }
  }
}

function mapJoseError(error: unknown, host: string, errors: typeof JoseErrors): AttestationTokenError {
  const options = { cause: error };
  // A token just issued that is already expired or not yet valid means the two clocks disagree.
  const clocks =
    "by this client's clock: check that the system clock (or the `clock` option, e.g. an emulator's virtual " +
    "clock) agrees with the attestation service's";
  if (error instanceof errors.JWTExpired)
    return new AttestationTokenError('ERR_ATTESTATION_TOKEN_EXPIRED', `the attestation token has expired ${clocks}`, options);
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'iss') {
      return new AttestationTokenError(
        'ERR_ATTESTATION_TOKEN_ISSUER',
        `the token issuer is not the configured endpoint ${host}`,
        options,
      );
    }
    if (error.claim === 'nbf' || error.claim === 'iat') {
      return new AttestationTokenError(
        'ERR_ATTESTATION_TOKEN_EXPIRED',
        `the attestation token is not valid yet (nbf) ${clocks}`,
        options,
      );
    }
    return new AttestationTokenError(
      'ERR_ATTESTATION_TOKEN_MALFORMED',
      `the token claim ${error.claim} is invalid: ${error.reason}`,
      options,
    );
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return new AttestationTokenError(
      'ERR_ATTESTATION_TOKEN_SIGNATURE',
      `the token signature does not verify under ${host}'s key`,
      options,
    );
  }
  if (error instanceof errors.JOSEAlgNotAllowed)
    return new AttestationTokenError('ERR_ATTESTATION_TOKEN_ALGORITHM', 'the token alg is not RS256', options);
  return new AttestationTokenError('ERR_ATTESTATION_TOKEN_MALFORMED', 'the attestation token is malformed', options);
}
