/**
 * HTTPS for the attestation client: https only, the caller's CA (or agent) when given, bounded time and
 * response size, no redirects (a redirect could move the key fetch off the pinned host).
 */
import type { Agent } from 'node:https';
import { request } from 'node:https';
import { AbortError, AttestationRequestError, InvalidArgumentError } from '../errors.js';
import { parseRetryAfter } from '../keyvault/retry.js';

export interface MaaHttpOptions {
  /** PEM CA certificate(s) to trust instead of the system roots (e.g. the emulator's). */
  ca?: string | readonly string[];
  /** A custom HTTPS agent (proxy, keep-alive, client certificates); `ca` still applies when given. */
  agent?: Agent;
  /** Per-request timeout. Default 30 000 ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface MaaHttpResponse {
  status: number;
  body: Buffer;
  /** The raw `Retry-After` header, when the answer has one. */
  retryAfter?: string;
}

const MAX_RESPONSE = 4 * 1024 * 1024;

export function httpsRequest(
  url: URL,
  options: MaaHttpOptions & { method: 'GET' | 'POST'; body?: string },
): Promise<MaaHttpResponse> {
  if (url.protocol !== 'https:') {
    return Promise.reject(
      new InvalidArgumentError(`attestation endpoints must be https, not ${url.protocol}`),
    );
  }
  if (options.signal?.aborted) {
    return Promise.reject(
      new AbortError('the attestation request was aborted', { cause: options.signal.reason }),
    );
  }
  const timeoutMs = options.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { accept: 'application/json' };
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(options.body);
    }
    const req = request(
      url,
      {
        method: options.method,
        headers,
        timeout: timeoutMs,
        ...(options.ca === undefined
          ? {}
          : { ca: [...(typeof options.ca === 'string' ? [options.ca] : options.ca)] }),
        ...(options.agent === undefined ? {} : { agent: options.agent }),
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE) {
            res.destroy(
              new AttestationRequestError(`the answer from ${url.host} is larger than ${MAX_RESPONSE} bytes`),
            );
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', reject);
        const retryAfter = res.headers['retry-after'];
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks),
            ...(typeof retryAfter === 'string' ? { retryAfter } : {}),
          }),
        );
      },
    );
    req.on('timeout', () =>
      req.destroy(new AttestationRequestError(`no answer from ${url.host} within ${timeoutMs} ms`)),
    );
    // `timeout` above is an idle timeout: a server that trickles bytes would reset it forever. This one
    // bounds the whole exchange; the promise settles once, so the destroy's own errors are ignored.
    const whole = setTimeout(() => {
      reject(new AttestationRequestError(`no complete answer from ${url.host} within ${timeoutMs} ms`));
      req.destroy();
    }, timeoutMs);
    req.on('close', () => clearTimeout(whole));
    req.on('error', (error) => {
      if (error instanceof AttestationRequestError) reject(error);
      else if (options.signal?.aborted) {
        reject(new AbortError('the attestation request was aborted', { cause: options.signal.reason }));
      } else {
        reject(
          new AttestationRequestError(
            `cannot reach ${url.host}: ${(error as Error).message} (check the endpoint, network, and the CA for private endpoints)`,
            {},
            { cause: error },
          ),
        );
      }
    });
    req.end(options.body);
  });
}

/** Parses a JSON answer or throws `AttestationRequestError` with the service's message for non-200 answers. */
export function jsonAnswer(res: MaaHttpResponse, what: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(res.body.toString('utf8'));
  } catch {
    json = undefined;
  }
  if (res.status !== 200) {
    const error = (json as { error?: { code?: unknown; message?: unknown; check?: unknown } } | undefined)
      ?.error;
    const code = typeof error?.code === 'string' ? error.code : undefined;
    const check = typeof error?.check === 'string' ? error.check : undefined;
    const message =
      typeof error?.message === 'string' ? error.message : res.body.toString('utf8').slice(0, 300);
    const retryAfterMs = res.retryAfter === undefined ? undefined : parseRetryAfter(res.retryAfter);
    throw new AttestationRequestError(`${what} answered HTTP ${res.status}: ${message}`, {
      statusCode: res.status,
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      ...(code === undefined ? {} : { serviceCode: code }),
      ...(check === undefined ? {} : { check }),
    });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new AttestationRequestError(`${what} answered 200 without a JSON object`, { statusCode: 200 });
  }
  return json as Record<string, unknown>;
}
