/**
 * `EmulatorCredential`: an @azure/core-auth `TokenCredential` that gets access tokens from the emulator's
 * token endpoint (the same App Service managed identity protocol `ManagedIdentityCredential` speaks), for
 * code that wants a credential object instead of `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` in the environment.
 */
import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/core-auth';
import { EmulatorCredentialError } from '../errors.js';
import { httpFetch } from '../http-client.js';

export interface EmulatorCredentialOptions {
  /** The emulator's token endpoint (`tokenUrl` of the running emulator). */
  tokenUrl: string;
  /** The emulator's identity secret (`IDENTITY_HEADER`). */
  identityHeader: string;
  /** Principal to act as; default the emulator's default principal. */
  clientId?: string;
  /** PEM CA when the token endpoint is https. */
  ca?: string;
}

/** Tokens are renewed this long before they expire. */
const REFRESH_MARGIN_MS = 5 * 60 * 1000;

export class EmulatorCredential implements TokenCredential {
  readonly #options: EmulatorCredentialOptions;
  readonly #cache = new Map<string, AccessToken>();

  constructor(options: EmulatorCredentialOptions) {
    new URL(options.tokenUrl);
    this.#options = { ...options };
  }

  /** The same identity as another principal of the emulator. */
  withClientId(clientId: string): EmulatorCredential {
    return new EmulatorCredential({ ...this.#options, clientId });
  }

  async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken> {
    const scope = Array.isArray(scopes) ? scopes[0] : scopes;
    if (!scope)
      throw new EmulatorCredentialError('getToken needs a scope such as https://vault.azure.net/.default');
    const resource = scope.replace(/\/\.default$/, '');
    const cached = this.#cache.get(resource);
    if (cached && cached.expiresOnTimestamp - REFRESH_MARGIN_MS > Date.now()) return cached;
    const url = new URL(this.#options.tokenUrl);
    url.searchParams.set('api-version', '2019-08-01');
    url.searchParams.set('resource', resource);
    if (this.#options.clientId) url.searchParams.set('client_id', this.#options.clientId);
    let status: number;
    let body: Record<string, unknown>;
    try {
      const res = await httpFetch(url, {
        headers: { 'x-identity-header': this.#options.identityHeader, accept: 'application/json' },
        timeoutMs: 10_000,
        ...(this.#options.ca ? { ca: this.#options.ca } : {}),
        ...(options?.abortSignal ? { signal: options.abortSignal as AbortSignal } : {}),
      });
      status = res.status;
      body = JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;
    } catch (cause) {
      throw new EmulatorCredentialError(
        `emulator token endpoint ${url.origin} did not answer: is the emulator running?`,
        {
          cause,
        },
      );
    }
    if (status !== 200 || typeof body.access_token !== 'string') {
      const why = typeof body.error_description === 'string' ? body.error_description : `HTTP ${status}`;
      throw new EmulatorCredentialError(`emulator token endpoint refused the request: ${why}`);
    }
    const expiresOn = Number(body.expires_on);
    const token: AccessToken = {
      token: body.access_token,
      expiresOnTimestamp: Number.isFinite(expiresOn) ? expiresOn * 1000 : Date.now() + 3600_000,
      tokenType: 'Bearer',
    };
    this.#cache.set(resource, token);
    return token;
  }
}
