/**
 * The per-attempt policy added to every Key Vault client: a bounded timeout on each HTTP attempt, and a
 * progress event for each retried attempt. The retry loop resending one request object is the SDK's
 * (@typespec/ts-http-runtime dist/esm/policies/retryPolicy.js); no service artifact applies.
 */
import { createHttpHeaders, createPipelineRequest, type PipelineResponse } from '@azure/core-rest-pipeline';
import test from 'ava';
import { attemptPolicy } from '../../src/keyvault/attempt-policy.js';
import type { RetryEvent } from '../../src/keyvault/secure-key-release.js';

function answer(status: number) {
  return (request: ReturnType<typeof createPipelineRequest>): Promise<PipelineResponse> =>
    Promise.resolve({ request, status, headers: createHttpHeaders() });
}

test('each Key Vault attempt gets a timeout unless the caller set one', async (t) => {
  const policy = attemptPolicy(30_000, undefined);
  const plain = createPipelineRequest({ url: 'https://v.example/keys/k/release' });
  t.is(plain.timeout, 0, 'the SDK sets none');
  await policy.sendRequest(plain, answer(200));
  t.is(plain.timeout, 30_000);
  const own = createPipelineRequest({ url: 'https://v.example/keys/k/release', timeout: 5000 });
  await policy.sendRequest(own, answer(200));
  t.is(own.timeout, 5000);
});

test('a retried attempt is reported with the reason of the failed one', async (t) => {
  const events: RetryEvent[] = [];
  const policy = attemptPolicy(30_000, (e) => events.push(e));
  const request = createPipelineRequest({ url: 'https://v.example/keys/k/release' });
  await policy.sendRequest(request, answer(503));
  t.deepEqual(events, [], 'nothing before a retry happens');
  await policy.sendRequest(request, () => Promise.reject(Object.assign(new Error('reset'), { code: 'ECONNRESET' })))
    .catch(() => {});
  await policy.sendRequest(request, answer(200));
  t.deepEqual(events, [
    { step: 'key-vault', attempt: 1, reason: 'HTTP 503' },
    { step: 'key-vault', attempt: 2, reason: 'ECONNRESET' },
  ]);
});

test('a throwing progress callback does not change the outcome', async (t) => {
  const policy = attemptPolicy(30_000, () => {
    throw new Error('observer bug');
  });
  const request = createPipelineRequest({ url: 'https://v.example/keys/k/release' });
  await policy.sendRequest(request, answer(503));
  const response = await policy.sendRequest(request, answer(200));
  t.is(response.status, 200);
});
