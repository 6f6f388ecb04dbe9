/**
 * The Key Vault pipeline policy that retries unanswered attempts. The Azure SDK's retry policy rethrows any
 * error that is not a RestError at once, and its node client reports an attempt's own timeout as an
 * AbortError (@typespec/ts-http-runtime dist/esm/policies/retryPolicy.js and dist/esm/nodeHttpClient.js), so
 * a vault too busy to answer within the attempt timeout used to fail the release on the first try
 * (`npm run bench:fleet`). No service artifact records a dropped connection; the failures are made here.
 */
import { createHttpHeaders, createPipelineRequest, type PipelineResponse } from '@azure/core-rest-pipeline';
import test from 'ava';
import { MAX_NETWORK_RETRIES, throttlePolicy } from '../../src/keyvault/throttle-policy.js';

const abortError = () => Object.assign(new Error('The operation was aborted.'), { name: 'AbortError' });
const fast = { baseDelayMs: 1, maxDelayMs: 2 };

function failing(errors: Array<() => Error>) {
  let calls = 0;
  const next = (request: ReturnType<typeof createPipelineRequest>): Promise<PipelineResponse> => {
    const make = errors[calls++];
    return make ? Promise.reject(make()) : Promise.resolve({ request, status: 200, headers: createHttpHeaders() });
  };
  return { next, calls: () => calls };
}

test('an attempt that timed out or lost its connection is sent again, and the answer that follows is returned', async (t) => {
  const { next, calls } = failing([
    abortError,
    () => Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }),
    () => Object.assign(new Error('connect'), { code: 'ECONNREFUSED' }),
  ]);
  const request = createPipelineRequest({ url: 'https://v.example/keys/k/release', method: 'POST' });
  const response = await throttlePolicy(fast).sendRequest(request, next);
  t.is(response.status, 200);
  t.is(calls(), 4);
});

test('a vault that never answers gets MAX_NETWORK_RETRIES more attempts, then its error', async (t) => {
  const { next, calls } = failing(Array.from({ length: 100 }, () => abortError));
  const request = createPipelineRequest({ url: 'https://v.example/keys/k/release', method: 'POST' });
  await t.throwsAsync(throttlePolicy(fast).sendRequest(request, next), { name: 'AbortError' });
  t.is(calls(), 1 + MAX_NETWORK_RETRIES);
  // The SDK's own resend of the same request does not get a new budget.
  await t.throwsAsync(throttlePolicy(fast).sendRequest(request, next));
});

test("the caller's abort, a TLS failure or any other error is not retried", async (t) => {
  const aborted = new AbortController();
  aborted.abort();
  const byCaller = failing([abortError]);
  const request = createPipelineRequest({
    url: 'https://v.example/keys/k/release',
    method: 'POST',
    abortSignal: aborted.signal,
  });
  await t.throwsAsync(throttlePolicy(fast).sendRequest(request, byCaller.next));
  t.is(byCaller.calls(), 1);
  const tls = failing([() => Object.assign(new Error('unable to verify'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })]);
  await t.throwsAsync(throttlePolicy(fast).sendRequest(createPipelineRequest({ url: 'https://v.example/' }), tls.next));
  t.is(tls.calls(), 1);
});

test('the wait before a resend ends when the caller aborts', async (t) => {
  const controller = new AbortController();
  const { next, calls } = failing([abortError, abortError]);
  const request = createPipelineRequest({
    url: 'https://v.example/keys/k/release',
    method: 'POST',
    abortSignal: controller.signal,
  });
  const pending = throttlePolicy({ baseDelayMs: 60_000, maxDelayMs: 60_000 }).sendRequest(request, next);
  setImmediate(() => controller.abort());
  await t.throwsAsync(pending, { name: 'AbortError' });
  t.true(calls() <= 2);
});
