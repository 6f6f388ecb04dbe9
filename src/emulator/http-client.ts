/**
 * A small HTTP(S) client for the emulator's own outgoing calls (issuer metadata, webhooks, the token
 * endpoint). It trusts exactly the CAs it is given (plus the system roots only when none are given), caps
 * response size and time, and never follows redirects.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { InvalidArgumentError } from '../errors.js';
import { EmulatorError } from './errors.js';

export interface HttpRequestOptions {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** PEM CA certificates to trust for https; when set, only these are trusted. */
  ca?: string | string[];
  timeoutMs?: number;
  /** Largest response body accepted. Default 1 MiB. */
  maxBytes?: number;
  signal?: AbortSignal;
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export function httpFetch(url: string | URL, options: HttpRequestOptions = {}): Promise<HttpResponse> {
  const target = typeof url === 'string' ? new URL(url) : url;
  if (target.protocol !== 'https:' && target.protocol !== 'http:') {
    return Promise.reject(new InvalidArgumentError(`unsupported URL scheme ${target.protocol}`));
  }
  const maxBytes = options.maxBytes ?? 1024 * 1024;
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise<HttpResponse>((resolve, reject) => {
    const headers: Record<string, string | number> = { ...options.headers };
    if (options.body !== undefined) headers['content-length'] = Buffer.byteLength(options.body);
    const common = {
      method: options.method ?? 'GET',
      headers,
      timeout: timeoutMs,
      ...(options.signal ? { signal: options.signal } : {}),
    };
    const onResponse = (res: import('node:http').IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) {
          res.destroy(new EmulatorError(`response from ${target.host} is larger than ${maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('error', reject);
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
    };
    const req =
      target.protocol === 'https:'
        ? httpsRequest(target, { ...common, ...(options.ca ? { ca: options.ca } : {}) }, onResponse)
        : httpRequest(target, common, onResponse);
    req.on('timeout', () =>
      req.destroy(new EmulatorError(`no answer from ${target.host} in ${timeoutMs} ms`)),
    );
    req.on('error', reject);
    req.end(options.body);
  });
}
