import type { PipelinePolicy } from '@azure/core-rest-pipeline';
import { MAX_THROTTLED_RETRIES, parseRetryAfter, retryDelay, sleep } from './retry.js';

/**
 * Retries of a Key Vault request that got no answer (the attempt timed out, the connection was refused, reset
 * or dropped), apart from `maxRetries`. An overloaded service, or a load balancer in front of it, drops
 * connections or leaves them unanswered; the Azure SDK's retry policy rethrows any error that is not a
 * `RestError` at once (`if (!isRestError(e)) throw e`, @typespec/ts-http-runtime dist/esm/policies/retryPolicy.js),
 * and its node client reports an attempt's own `timeout` as an `AbortError` (dist/esm/nodeHttpClient.js,
 * `makeRequest`), so one unanswered attempt failed the whole release (`npm run bench:fleet`: 48 of 2,000
 * VMs, README Performance). Each is retried after a jittered backoff, within the call's deadline.
 */
export const MAX_NETWORK_RETRIES = 10;

/** Error codes of a request that may never have reached the service, or whose answer was lost. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'REQUEST_SEND_ERROR',
]);

/**
 * A failure worth another attempt: the attempt's own timeout (an `AbortError` while the caller's signal has
 * not aborted) or a connection-level error code. A caller's abort, a TLS verification failure or a parse error
 * is not.
 */
function isNetworkFailure(error: unknown, callerSignal: { aborted: boolean } | undefined): boolean {
  if (callerSignal?.aborted) return false;
  const e = error as { name?: string; code?: string } | undefined;
  if (e?.name === 'AbortError') return true;
  return typeof e?.code === 'string' && NETWORK_CODES.has(e.code);
}

/**
 * Key Vault 429s and unanswered attempts, handled before the Azure SDK's own retry policy sees them.
 *
 * 429: the SDK's throttling strategy waits exactly `Retry-After` (no jitter) and spends the shared
 * `maxRetries` budget (@typespec/ts-http-runtime dist/esm/retryStrategies/throttlingRetryStrategy.js,
 * policies/retryPolicy.js, which @azure/core-rest-pipeline wraps): a fleet throttled in one window all comes
 * back at the same instant, is throttled again, and runs out of retries (measured by `npm run bench:fleet`).
 * Key Vault asks clients to back off on 429 ("Azure Key Vault throttling guidance", MicrosoftDocs/azure-docs
 * articles/key-vault/general/overview-throttling.md). Here a 429 with `Retry-After` is retried after that wait
 * plus a jittered backoff (`retryDelay`), up to `MAX_THROTTLED_RETRIES` times, apart from `maxRetries`; past
 * that (or without `Retry-After`) the 429 goes to the SDK as before.
 *
 * No answer: retried after a jittered backoff (`retryDelay` without `Retry-After`), up to
 * `MAX_NETWORK_RETRIES` times; past that the error goes to the SDK as before. Releasing a key changes nothing
 * in the vault, so sending the request again is safe. Every wait ends when the caller's signal (the call's
 * deadline) aborts.
 *
 * Sits at `perRetry`, inside the SDK's retry loop, which resends the same request object, so resending it here
 * is what the SDK itself does; the attempt policy below it gives each resend its own timeout.
 */
export function throttlePolicy(options: { baseDelayMs?: number; maxDelayMs?: number } = {}): PipelinePolicy {
  // Per request, across the SDK's own resends: the budgets bound the request, not each SDK attempt.
  const spent = new WeakMap<object, { throttled: number; network: number }>();
  return {
    name: 'cvmSkrThrottle',
    async sendRequest(request, next) {
      const signal = request.abortSignal as AbortSignal | undefined;
      for (;;) {
        let budget = spent.get(request);
        if (!budget) spent.set(request, (budget = { throttled: 0, network: 0 }));
        let response;
        try {
          response = await next(request);
        } catch (error) {
          if (budget.network >= MAX_NETWORK_RETRIES || !isNetworkFailure(error, signal)) throw error;
          await sleep(retryDelay(budget.network++, undefined, options), signal);
          continue;
        }
        if (response.status !== 429 || budget.throttled >= MAX_THROTTLED_RETRIES) return response;
        const header = response.headers.get('retry-after');
        const retryAfterMs = header === undefined ? undefined : parseRetryAfter(header);
        if (retryAfterMs === undefined) return response;
        await sleep(retryDelay(budget.throttled++, retryAfterMs, options), signal);
      }
    },
  };
}
