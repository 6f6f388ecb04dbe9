import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/core-auth';

/**
 * `DefaultAzureCredential` (managed identity on a VM), with @azure/identity imported at the first token
 * request: the identity stack is the largest part of what `import('cvm-skr')` would otherwise load
 * (bench/startup.bench.ts), and a caller that passes its own credential never needs it.
 */
export class LazyDefaultAzureCredential implements TokenCredential {
  #credential: Promise<TokenCredential> | undefined;

  async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken | null> {
    this.#credential ??= import('@azure/identity').then(
      ({ DefaultAzureCredential }) => new DefaultAzureCredential(),
      (error: unknown) => {
        this.#credential = undefined; // a failed load is not remembered
        throw error;
      },
    );
    return (await this.#credential).getToken(scopes, options);
  }
}
