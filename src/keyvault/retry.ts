import { AbortError } from '../errors.js';

/** Capped exponential backoff with full jitter: uniform in [0, min(max, base * 2^attempt)]. */
export function backoffDelay(
  attempt: number,
  options: { baseDelayMs?: number; maxDelayMs?: number } = {},
): number {
  const base = options.baseDelayMs ?? 500;
  const cap = options.maxDelayMs ?? 10_000;
  return Math.floor(Math.random() * Math.min(cap, base * 2 ** attempt));
}

/** Waits `ms`, or rejects with `AbortError` as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted)
    return Promise.reject(new AbortError('aborted while waiting to retry', { cause: signal.reason }));
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortError('aborted while waiting to retry', { cause: signal?.reason }));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A `Retry-After` value in ms: delay-seconds or an HTTP-date (RFC 9110 §10.2.3). Undefined when it is neither;
 * a date in the past is 0.
 */
export function parseRetryAfter(value: string, now: number = Date.now()): number | undefined {
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP-date names its day and month: a bare '-3' (which Date.parse reads as a year) is not one.
  const date = /[a-z]/i.test(text) ? Date.parse(text) : NaN;
  return Number.isFinite(date) ? Math.max(0, date - now) : undefined;
}

/**
 * Retries a throttled request (429 with `Retry-After`) may take, apart from `maxRetries`: a fleet booting at
 * once can be told to come back several windows in a row, and each wait is what the service asked for.
 */
export const MAX_THROTTLED_RETRIES = 10;

/**
 * The wait before retrying: when the service named one (`Retry-After`), that wait in full (coming back sooner
 * only earns another 429; the call's `timeoutMs` still bounds it) plus the jittered `backoffDelay`, so that
 * the many clients told the same instant do not all come back at it; else `backoffDelay` alone.
 */
export function retryDelay(
  attempt: number,
  retryAfterMs: number | undefined,
  options: { baseDelayMs?: number; maxDelayMs?: number } = {},
): number {
  const spread = backoffDelay(attempt, options);
  return retryAfterMs === undefined ? spread : retryAfterMs + spread;
}
