/**
 * How the emulated vault checks the attestation token of a release request: the token's `iss` must be
 * one of the issuers the vault trusts; the signing key comes from that issuer's OpenID metadata
 * (`/.well-known/openid-configuration` -> `jwks_uri`, same origin only) or, failing that, `{issuer}/certs`
 * (the MAA shape: JWKs that may carry only `x5c`); RS256 only; `exp`/`nbf` against the vault's virtual
 * clock with a small skew; an unknown `kid` refetches the keys once.
 *
 * Any failure is a `ReleaseDeniedError` with a reason for local diagnostics; the vault answers all of them with
 * the same 403, like the service.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, type JWTPayload, jwtVerify } from 'jose';
import { ReleaseDeniedError as ReleaseDenial } from '../../errors.js';
import { normalizeAuthority } from '../../keyvault/release-policy.js';
import { httpFetch } from '../http-client.js';

export interface TrustedIssuer {
  /** Issuer URL exactly as tokens carry it in `iss` (a trailing slash is ignored). */
  issuer: string;
  /** PEM CA(s) for fetching its metadata over https (the emulator CA for the emulated MAA). */
  ca?: string | string[];
  /** Static JWKS instead of fetching (for tests or offline use). */
  jwks?: { keys: Record<string, unknown>[] };
}

/** Allowed clock skew for token `exp`/`nbf`. */
export const TOKEN_CLOCK_SKEW_SECONDS = 60;
/** Keys fetched from an issuer are reused this long. */
const KEY_CACHE_MS = 5 * 60 * 1000;

interface CachedKeys {
  keys: Record<string, unknown>[];
  fetchedAt: number;
}

export class AttestationVerifier {
  readonly #issuers = new Map<string, TrustedIssuer>();
  readonly #cache = new Map<string, CachedKeys>();
  /**
   * One fetch per issuer at a time: releases arriving together (a fleet booting at once) share it rather than
   * each fetching the keys from an attestation service that is itself busy (`npm run bench:fleet`).
   */
  readonly #fetching = new Map<string, Promise<Record<string, unknown>[]>>();
  readonly #now: () => Date;

  constructor(issuers: readonly TrustedIssuer[], now: () => Date) {
    this.#now = now;
    for (const i of issuers) this.trust(i);
  }

  trust(issuer: TrustedIssuer): void {
    new URL(issuer.issuer);
    this.#issuers.set(normalizeAuthority(issuer.issuer), issuer);
    this.#cache.delete(normalizeAuthority(issuer.issuer));
    this.#fetching.delete(normalizeAuthority(issuer.issuer));
  }

  untrust(issuer: string): void {
    this.#issuers.delete(normalizeAuthority(issuer));
    this.#cache.delete(normalizeAuthority(issuer));
    this.#fetching.delete(normalizeAuthority(issuer));
  }

  trustedIssuers(): string[] {
    return [...this.#issuers.values()].map((i) => i.issuer);
  }

  /** Verifies the token and returns its claims, or throws `ReleaseDeniedError`. */
  async verify(token: string): Promise<JWTPayload> {
    if (typeof token !== 'string' || token.length > 256 * 1024 || token.split('.').length !== 3) {
      throw new ReleaseDenial('target is not a compact JWT');
    }
    let header: ReturnType<typeof decodeProtectedHeader>;
    let unverified: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
      unverified = decodeJwt(token);
    } catch {
      throw new ReleaseDenial('target is not a decodable JWT');
    }
    if (header.alg !== 'RS256') throw new ReleaseDenial(`token alg ${String(header.alg)} is not RS256`);
    if (typeof unverified.iss !== 'string') throw new ReleaseDenial('token has no iss');
    const id = normalizeAuthority(unverified.iss);
    const issuer = this.#issuers.get(id);
    if (!issuer) throw new ReleaseDenial('token issuer is not trusted by this vault');
    const key = await this.#keyFor(id, issuer, header.kid);
    try {
      const { payload } = await jwtVerify(token, key, {
        algorithms: ['RS256'],
        currentDate: this.#now(),
        clockTolerance: TOKEN_CLOCK_SKEW_SECONDS,
        requiredClaims: ['exp'],
      });
      return payload;
    } catch (cause) {
      const code = (cause as { code?: string }).code ?? 'ERR_JWT_INVALID';
      throw new ReleaseDenial(`token verification failed (${code})`);
    }
  }

  async #keyFor(id: string, issuer: TrustedIssuer, kid: string | undefined): Promise<KeyObject> {
    const pick = (keys: Record<string, unknown>[]) =>
      kid === undefined ? (keys.length === 1 ? keys[0] : undefined) : keys.find((k) => k.kid === kid);
    let cached = this.#cache.get(id);
    const fresh = cached && Date.now() - cached.fetchedAt < KEY_CACHE_MS;
    let jwk = fresh ? pick(cached!.keys) : undefined;
    if (!jwk) {
      let fetching = this.#fetching.get(id);
      if (!fetching) {
        fetching = this.#fetchKeys(issuer).finally(() => this.#fetching.delete(id));
        this.#fetching.set(id, fetching);
      }
      cached = { keys: await fetching, fetchedAt: Date.now() };
      this.#cache.set(id, cached);
      jwk = pick(cached.keys);
    }
    if (!jwk) throw new ReleaseDenial('no key of the issuer matches the token kid');
    return importVerificationKey(jwk);
  }

  async #fetchKeys(issuer: TrustedIssuer): Promise<Record<string, unknown>[]> {
    if (issuer.jwks) return issuer.jwks.keys;
    const base = issuer.issuer.replace(/\/+$/, '');
    const origin = new URL(base).origin;
    const get = async (url: string): Promise<unknown> => {
      const res = await httpFetch(url, {
        timeoutMs: 5_000,
        maxBytes: 256 * 1024,
        headers: { accept: 'application/json' },
        ...(issuer.ca ? { ca: issuer.ca } : {}),
      });
      if (res.status !== 200) throw new ReleaseDenial(`issuer metadata answered HTTP ${res.status}`);
      return JSON.parse(res.body.toString('utf8'));
    };
    try {
      let jwksUri = `${base}/certs`;
      try {
        const meta = (await get(`${base}/.well-known/openid-configuration`)) as { jwks_uri?: unknown };
        if (typeof meta.jwks_uri === 'string') {
          if (new URL(meta.jwks_uri).origin !== origin)
            throw new ReleaseDenial('jwks_uri is not on the issuer host');
          jwksUri = meta.jwks_uri;
        }
      } catch (e) {
        if (e instanceof ReleaseDenial && e.message.startsWith('jwks_uri')) throw e;
        // No usable OpenID metadata: MAA also serves its keys at {issuer}/certs.
      }
      const jwks = (await get(jwksUri)) as { keys?: unknown };
      if (!Array.isArray(jwks.keys)) throw new ReleaseDenial('issuer JWKS has no keys');
      return jwks.keys.filter((k): k is Record<string, unknown> => typeof k === 'object' && k !== null);
    } catch (e) {
      if (e instanceof ReleaseDenial) throw e;
      throw new ReleaseDenial('issuer signing keys could not be fetched');
    }
  }
}

/** An RSA verification key from a JWK with `n`/`e`, or from its `x5c` leaf when that is all it has. */
function importVerificationKey(jwk: Record<string, unknown>): KeyObject {
  try {
    if (typeof jwk.n === 'string' && typeof jwk.e === 'string') {
      return createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e }, format: 'jwk' });
    }
    const x5c = jwk.x5c;
    if (Array.isArray(x5c) && typeof x5c[0] === 'string') {
      const pem = `-----BEGIN CERTIFICATE-----\n${x5c[0]}\n-----END CERTIFICATE-----\n`;
      return createPublicKey(pem);
    }
  } catch {
    // fall through
  }
  throw new ReleaseDenial('issuer key is not a usable RSA key');
}
