/**
 * Retry waits and the attestation retry loop under throttling. `Retry-After` is delay-seconds or an HTTP-date
 * (RFC 9110 §10.2.3); Azure services send it with 429 ("Azure Key Vault throttling guidance",
 * MicrosoftDocs/azure-docs articles/key-vault/general/overview-throttling.md), and the Azure SDK's own
 * throttling strategy honours both forms (@typespec/ts-http-runtime retryStrategies/throttlingRetryStrategy.js).
 * No recorded 429 of the attestation service exists; the answers below are the fault proxy's.
 */
import test from 'ava';
import { AttestationRequestError } from '../../src/errors.js';
import type { RetryEvent } from '../../src/keyvault/secure-key-release.js';
import { MAX_THROTTLED_RETRIES, parseRetryAfter, retryDelay } from '../../src/keyvault/retry.js';
import { exportableKey, proxiedEmulator, releaseClient } from '../helpers/e2e-emulator.js';

test('Retry-After is read as delay-seconds or as an HTTP-date; anything else is ignored', (t) => {
  t.is(parseRetryAfter('7'), 7000);
  t.is(parseRetryAfter(' 0 '), 0);
  const now = Date.parse('2026-01-01T00:00:00Z');
  t.is(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now), 5000);
  t.is(parseRetryAfter('Wed, 31 Dec 2025 23:59:00 GMT', now), 0, 'a date in the past is now');
  t.is(parseRetryAfter('soon'), undefined);
  t.is(parseRetryAfter('-3'), undefined);
});

test('a retry after Retry-After waits what the service asked plus a jitter bounded by maxDelayMs', (t) => {
  const options = { baseDelayMs: 100, maxDelayMs: 5000 };
  const waits = Array.from({ length: 500 }, () => retryDelay(0, 2000, options));
  t.true(waits.every((w) => w >= 2000 && w < 2100));
  t.true(new Set(waits).size > 10, 'spread, not one instant for every client');
  t.true(
    Array.from({ length: 100 }, () => retryDelay(3, 60_000, options)).every((w) => w >= 60_000 && w < 60_800),
  );
  t.true(Array.from({ length: 100 }, () => retryDelay(2, undefined, options)).every((w) => w >= 0 && w < 400));
});

const attestRequests = (maa: { requests: { method: string; path: string }[] }) =>
  maa.requests.filter((r) => r.method === 'POST' && r.path.startsWith('/attest/'));

test('attestation answered 429 with Retry-After more times than maxRetries still converges, and each wait honours Retry-After', async (t) => {
  const { e, vault, maa } = await proxiedEmulator(t);
  await exportableKey(e, 'k', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  let refused = 0;
  maa.plan = (r) => {
    if (r.method === 'POST' && r.path.startsWith('/attest/') && refused < 4) {
      refused++;
      return { status: 429, headers: { 'retry-after': '0' }, body: '{"error":{"code":"TooManyRequests"}}' };
    }
    return 'pass';
  };
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const retries: RetryEvent[] = [];
  // maxRetries 2 < 4 throttled answers: before throttled answers had their own budget this failed with 429.
  const s = releaseClient(t, e, platform, {
    attestationEndpoint: maa.url,
    onRetry: (event) => retries.push(event),
  });
  const released = await s.releaseKey(`${vault.url}/keys/k`);
  t.is(released.name, 'k');
  t.is(attestRequests(maa).length, 5, 'four throttled answers, then a token');
  t.deepEqual(
    retries.filter((r) => r.step === 'attestation').map((r) => r.reason),
    ['HTTP 429', 'HTTP 429', 'HTTP 429', 'HTTP 429'],
  );
});

test('the wait after a 429 from the attestation service is at least its Retry-After', async (t) => {
  const { e, vault, maa } = await proxiedEmulator(t);
  await exportableKey(e, 'k', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  let refused = 0;
  maa.plan = (r) =>
    r.method === 'POST' && r.path.startsWith('/attest/') && refused++ === 0
      ? { status: 429, headers: { 'retry-after': '1' }, body: '{}' }
      : 'pass';
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const retries: RetryEvent[] = [];
  const s = releaseClient(t, e, platform, {
    attestationEndpoint: maa.url,
    retry: { maxRetries: 2, baseDelayMs: 10, maxDelayMs: 5000 },
    onRetry: (event) => retries.push(event),
  });
  await s.releaseKey(`${vault.url}/keys/k`);
  const [retry] = retries.filter((r) => r.step === 'attestation');
  // Before the fix the wait was the plain backoff, under baseDelayMs (10 ms) on the first retry.
  t.true(retry!.delayMs! >= 1000 && retry!.delayMs! < 1010, `waited ${retry!.delayMs} ms`);
});

test('attestation throttled forever: bounded, MAX_THROTTLED_RETRIES retries then ERR_ATTESTATION_REQUEST with 429', async (t) => {
  const { e, vault, maa } = await proxiedEmulator(t);
  await exportableKey(e, 'k', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  maa.plan = (r) =>
    r.method === 'POST' && r.path.startsWith('/attest/')
      ? { status: 429, headers: { 'retry-after': '0' }, body: '{}' }
      : 'pass';
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
  const error = await t.throwsAsync(s.releaseKey(`${vault.url}/keys/k`), {
    instanceOf: AttestationRequestError,
  });
  t.is(error?.statusCode, 429);
  t.is(error?.retryAfterMs, 0);
  t.is(attestRequests(maa).length, 1 + MAX_THROTTLED_RETRIES);
});

test('a 503 without Retry-After still has only maxRetries retries', async (t) => {
  const { e, vault, maa } = await proxiedEmulator(t);
  await exportableKey(e, 'k', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  maa.plan = (r) => (r.method === 'POST' && r.path.startsWith('/attest/') ? { status: 503, body: '{}' } : 'pass');
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
  await t.throwsAsync(s.releaseKey(`${vault.url}/keys/k`), { instanceOf: AttestationRequestError });
  t.is(attestRequests(maa).length, 3, 'maxRetries 2: three attempts');
});

const authorizedReleases = (proxy: { requests: { method: string; path: string; headers: { authorization?: string } }[] }) =>
  proxy.requests.filter((r) => r.method === 'POST' && r.path.includes('/release') && r.headers.authorization);

test('Key Vault answering 429 with Retry-After more times than maxRetries still releases (throttled answers have their own budget)', async (t) => {
  const { e, vault, maa } = await proxiedEmulator(t);
  await exportableKey(e, 'k', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  let refused = 0;
  vault.plan = (r) =>
    r.method === 'POST' && r.path.includes('/release') && r.headers.authorization && refused++ < 5
      ? { status: 429, headers: { 'retry-after': '0' }, body: '{"error":{"code":"Throttled","message":"slow down"}}' }
      : 'pass';
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const retries: RetryEvent[] = [];
  // maxRetries 2 < 5: the Azure SDK alone gives up after three attempts with the 429.
  const s = releaseClient(t, e, platform, { attestationEndpoint: maa.url, onRetry: (event) => retries.push(event) });
  t.is((await s.releaseKey(`${vault.url}/keys/k`)).name, 'k');
  t.is(authorizedReleases(vault).length, 6);
  t.is(retries.filter((r) => r.step === 'key-vault' && r.reason === 'HTTP 429').length, 5, 'each resend is reported');
});

test('Key Vault throttling forever: bounded, MAX_THROTTLED_RETRIES resends, then the SDK’s maxRetries, then the 429', async (t) => {
  const { e, vault, maa } = await proxiedEmulator(t);
  await exportableKey(e, 'k', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  vault.plan = (r) =>
    r.method === 'POST' && r.path.includes('/release') && r.headers.authorization
      ? { status: 429, headers: { 'retry-after': '0' }, body: '{"error":{"code":"Throttled","message":"slow down"}}' }
      : 'pass';
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
  const error = await t.throwsAsync(s.releaseKey(`${vault.url}/keys/k`));
  t.is((error as { statusCode?: number }).statusCode, 429);
  t.is(authorizedReleases(vault).length, 1 + MAX_THROTTLED_RETRIES + 2);
});

test('a vault that drops the release connection more times than maxRetries still releases (dropped connections have their own budget)', async (t) => {
  const { e, vault, maa } = await proxiedEmulator(t);
  await exportableKey(e, 'k', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  let dropped = 0;
  vault.plan = (r) =>
    r.method === 'POST' && r.path.includes('/release') && r.headers.authorization && dropped++ < 5 ? 'reset' : 'pass';
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const retries: RetryEvent[] = [];
  // maxRetries 2 < 5: the Azure SDK alone gives up after three attempts.
  const s = releaseClient(t, e, platform, { attestationEndpoint: maa.url, onRetry: (event) => retries.push(event) });
  t.is((await s.releaseKey(`${vault.url}/keys/k`)).name, 'k');
  t.is(authorizedReleases(vault).length, 6);
  t.is(retries.filter((r) => r.step === 'key-vault').length, 5, 'each resend is reported');
});
