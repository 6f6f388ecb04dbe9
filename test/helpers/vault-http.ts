/** Raw HTTPS to an emulated vault (no SDK retries hiding a failed request), for crash and load tests. */
import { request as httpRequest } from 'node:http';
import { Agent, request } from 'node:https';

export interface VaultEndpoint {
  vaultUrl: string;
  tokenUrl: string;
  identityHeader: string;
  caPem: string;
}

export interface VaultHttp {
  call(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }>;
  close(): void;
}

function getToken(e: VaultEndpoint): Promise<string> {
  // App Service managed identity protocol, as ManagedIdentityCredential calls it (2019-08-01).
  const url = new URL(e.tokenUrl);
  url.searchParams.set('api-version', '2019-08-01');
  url.searchParams.set('resource', 'https://vault.azure.net');
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers: { 'x-identity-header': e.identityHeader } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        try {
          resolve((JSON.parse(text) as { access_token: string }).access_token);
        } catch (err) {
          reject(err as Error);
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

export async function vaultHttp(e: VaultEndpoint, maxSockets = 64): Promise<VaultHttp> {
  const token = await getToken(e);
  const agent = new Agent({ ca: e.caPem, keepAlive: true, maxSockets });
  return {
    call(method, path, body) {
      const url = new URL(path, e.vaultUrl);
      if (!url.searchParams.has('api-version')) url.searchParams.set('api-version', '7.5');
      const data = body === undefined ? undefined : JSON.stringify(body);
      return new Promise((resolve, reject) => {
        const req = request(
          url,
          {
            method,
            agent,
            headers: {
              authorization: `Bearer ${token}`,
              ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}),
            },
          },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (text += c));
            res.on('error', reject);
            res.on('end', () => {
              try {
                resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} });
              } catch (err) {
                reject(err as Error);
              }
            });
          },
        );
        req.on('error', reject);
        req.end(data);
      });
    },
    close: () => agent.destroy(),
  };
}
