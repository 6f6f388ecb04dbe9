import type { PipelinePolicy } from '@azure/core-rest-pipeline';
import type { RetryEvent } from './secure-key-release.js';

/**
 * Runs once per Key Vault HTTP attempt (core-rest-pipeline `perRetry` position, inside the SDK's retry
 * policy, which resends the same request object: `response = await next(request)` in a loop, in
 * @typespec/ts-http-runtime dist/esm/policies/retryPolicy.js, which @azure/core-rest-pipeline wraps): gives
 * each attempt a timeout unless the caller set one (`request.timeout`; the SDK sets none, so a vault that
 * accepts and never answers would hold an attempt until the call's deadline), and reports retried attempts.
 */
export function attemptPolicy(
  timeoutMs: number,
  onRetry: ((event: RetryEvent) => void) | undefined,
): PipelinePolicy {
  const failures = new WeakMap<object, { attempt: number; reason: string }>();
  return {
    name: 'cvmSkrAttempt',
    async sendRequest(request, next) {
      if (!request.timeout) request.timeout = timeoutMs;
      const previous = failures.get(request);
      if (previous) notify(onRetry, { step: 'key-vault', ...previous });
      const attempt = (previous?.attempt ?? 0) + 1;
      try {
        const response = await next(request);
        if (response.status === 408 || response.status === 429 || response.status >= 500)
          failures.set(request, { attempt, reason: `HTTP ${response.status}` });
        return response;
      } catch (error) {
        failures.set(request, { attempt, reason: (error as { code?: string }).code ?? 'no answer' });
        throw error;
      }
    },
  };
}

function notify(onRetry: ((event: RetryEvent) => void) | undefined, event: RetryEvent): void {
  try {
    onRetry?.(event);
  } catch {
    // A progress callback must not change the outcome of a release.
  }
}
