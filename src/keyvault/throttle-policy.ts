import type { PipelinePolicy } from '@azure/core-rest-pipeline';
import { MAX_THROTTLED_RETRIES, parseRetryAfter, retryDelay, sleep } from './retry.js';

/**
 * Key Vault 429s, handled before the Azure SDK's own retry policy sees them. Its throttling strategy waits
 * exactly `Retry-After` (no jitter) and spends the shared `maxRetries` budget
 * (@typespec/ts-http-runtime dist/esm/retryStrategies/throttlingRetryStrategy.js, policies/retryPolicy.js,
 * which @azure/core-rest-pipeline wraps): a fleet throttled in one window all comes back at the same instant,
 * is throttled again, and runs out of retries (measured by `npm run bench:fleet`). Key Vault asks clients to
 * back off on 429 ("Azure Key Vault throttling guidance", MicrosoftDocs/azure-docs
 * articles/key-vault/general/overview-throttling.md). Here a 429 with `Retry-After` is retried after that wait
 * plus a jittered backoff (`retryDelay`), up to `MAX_THROTTLED_RETRIES` times, apart from `maxRetries`; past
 * that (or without `Retry-After`) the 429 goes to the SDK as before. Sits at `perRetry`, inside the SDK's
 * retry loop, which resends the same request object, so resending it here is what the SDK itself does.
 */
export function throttlePolicy(options: { baseDelayMs?: number; maxDelayMs?: number } = {}): PipelinePolicy {
  // Per request, across the SDK's own resends: the budget bounds the request, not each SDK attempt.
  const spent = new WeakMap<object, number>();
  return {
    name: 'cvmSkrThrottle',
    async sendRequest(request, next) {
      for (;;) {
        const response = await next(request);
        const throttled = spent.get(request) ?? 0;
        if (response.status !== 429 || throttled >= MAX_THROTTLED_RETRIES) return response;
        const header = response.headers.get('retry-after');
        const retryAfterMs = header === undefined ? undefined : parseRetryAfter(header);
        if (retryAfterMs === undefined) return response;
        spent.set(request, throttled + 1);
        await sleep(retryDelay(throttled, retryAfterMs, options), request.abortSignal as AbortSignal | undefined);
      }
    },
  };
}
