/**
 * The emulated services' opt-in throttle. Backing artifacts: Key Vault's limits are "maximum transactions
 * allowed in 10 seconds, per vault per region" (MicrosoftDocs/azure-docs includes/key-vault-limits.md, the
 * include of articles/key-vault/general/service-limits.md); past them the service "returns HTTP status code 429
 * (Too many requests)" and "failed requests that return a 429 do not count towards the throttle limits"
 * (MicrosoftDocs/azure-docs articles/key-vault/general/overview-throttling.md). No recorded 429 answer of either
 * service was found, so the error bodies are the emulator's own; Retry-After follows RFC 9110 §10.2.3.
 */
import { request } from 'node:https';
import test from 'ava';
import type { KeyClient } from '@azure/keyvault-keys';
import { FixedWindowThrottle } from '../../src/emulator/throttle.js';
import { emulator, exportableKey } from '../helpers/e2e-emulator.js';

test('the fixed-window throttle admits `limit` per window, refuses the rest with the seconds left, and does not count refusals', (t) => {
  let now = 21_000;
  const throttle = new FixedWindowThrottle({ limit: 2, windowMs: 10_000 }, () => now);
  t.true(throttle.admit().admitted);
  t.true(throttle.admit().admitted);
  t.deepEqual(throttle.admit(), { admitted: false, retryAfterSeconds: 9 });
  now = 29_500;
  t.deepEqual(throttle.admit(), { admitted: false, retryAfterSeconds: 1 });
  now = 30_000;
  t.true(throttle.admit().admitted, 'a new window');
  t.true(throttle.admit().admitted, 'the refusals of the last window did not count');
  t.false(throttle.admit().admitted);
  t.is(throttle.throttled, 3);
});

test('the throttle refuses limits that are not positive', (t) => {
  t.throws(() => new FixedWindowThrottle({ limit: 0, windowMs: 1000 }), { instanceOf: RangeError });
  t.throws(() => new FixedWindowThrottle({ limit: 1, windowMs: 0 }), { instanceOf: RangeError });
});

/** Release attempts with a bogus token: the throttle counts them before the token is checked, as transactions. */
async function releaseStatuses(client: KeyClient, n: number) {
  const out: { status: number | undefined; retryAfter: string | undefined }[] = [];
  for (let i = 0; i < n; i++) {
    try {
      await client.releaseKey('k', 'not-a-token');
      out.push({ status: 200, retryAfter: undefined });
    } catch (e) {
      const error = e as { statusCode?: number; response?: { headers: { get(n: string): string | undefined } } };
      out.push({ status: error.statusCode, retryAfter: error.response?.headers.get('retry-after') });
    }
  }
  return out;
}

test('an emulated vault with a throttle answers release requests past the limit with 429 and Retry-After', async (t) => {
  const e = await emulator(t, { vault: { throttle: { limit: 2, windowMs: 60_000 } } });
  await exportableKey(e, 'k', 'oct-HSM');
  const client = e.keyClient({ retryOptions: { maxRetries: 0 } });
  const answers = await releaseStatuses(client, 3);
  t.not(answers[0]!.status, 429);
  t.not(answers[1]!.status, 429);
  t.is(answers[2]!.status, 429);
  const seconds = Number(answers[2]!.retryAfter);
  t.true(Number.isInteger(seconds) && seconds >= 1 && seconds <= 60, `Retry-After ${answers[2]!.retryAfter}`);
  // Reads are not key operations: the throttle leaves them alone.
  t.is((await client.getKey('k')).name, 'k');
});

test('an emulated vault has no throttle by default', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'k', 'oct-HSM');
  const client = e.keyClient({ retryOptions: { maxRetries: 0 } });
  const answers = await releaseStatuses(client, 5);
  t.false(answers.some((a) => a.status === 429));
});

function attest(e: { attestationUrl: string; caPem: string }): Promise<{ status: number; retryAfter?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${e.attestationUrl}/attest/SevSnpVm?api-version=2022-08-01`,
      { method: 'POST', ca: e.caPem, headers: { 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        const retryAfter = res.headers['retry-after'];
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, ...(typeof retryAfter === 'string' ? { retryAfter } : {}) }),
        );
      },
    );
    req.on('error', reject);
    req.end('{}');
  });
}

test('an emulated attestation service with a throttle answers attestation requests past the limit with 429 and Retry-After', async (t) => {
  const e = await emulator(t, { attestation: { throttle: { limit: 1, windowMs: 60_000 } } });
  const first = await attest(e);
  t.is(first.status, 400, 'the first (bad) request is admitted and judged');
  const second = await attest(e);
  t.is(second.status, 429);
  t.regex(second.retryAfter ?? '', /^\d+$/);
  t.is(e.attestation.counters.throttled, 1);
  t.is(e.attestation.counters.rejected, 1, 'the throttled request was not judged');
});

test('an emulated attestation service has no throttle by default', async (t) => {
  const e = await emulator(t);
  for (let i = 0; i < 4; i++) t.is((await attest(e)).status, 400);
  t.is(e.attestation.counters.throttled, 0);
});
