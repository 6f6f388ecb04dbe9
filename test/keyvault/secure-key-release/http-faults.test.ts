/**
 * HTTP faults in front of the emulated attestation service and Key Vault, beyond those of
 * test/keyvault/secure-key-release/behaviour.test.ts: 503 then 200, answers slower than the per-call timeout, wrong content
 * types and non-JSON bodies, connection resets on the release. Every failure is typed, bounded, and caches
 * nothing: the next call after the fault goes away attests or releases afresh and works.
 */
import test, { type ExecutionContext } from 'ava';
import type { Emulator } from '../../../src/emulator/start.js';
import {
  AbortError,
  AttestationRequestError,
  type CvmSkrError,
  KeyVaultRequestError,
  ReleaseResponseInvalidError,
} from '../../../src/errors.js';
import { exportableKey, proxiedEmulator, releaseClient } from '../../helpers/e2e-emulator.js';
import type { FaultProxy, ProxiedRequest } from '../../helpers/fault-proxy.js';
import { MAX_NETWORK_RETRIES } from '../../../src/keyvault/throttle-policy.js';

async function proxied(t: ExecutionContext) {
  const { e, vault, maa } = await proxiedEmulator(t);
  await exportableKey(e, 'k', 'oct-HSM', e.releasePolicy());
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  return { e, vault, maa, platform };
}

const isRelease = (r: ProxiedRequest) =>
  r.method === 'POST' && r.path.includes('/release') && r.headers.authorization !== undefined;
const isAttest = (r: ProxiedRequest) => r.path.startsWith('/attest/');
const releases = (e: Emulator) => e.vault.releaseDecisions().length;

/** Faults the first `times` requests matching `match`, passes the rest. */
function first(times: number, match: (r: ProxiedRequest) => boolean, fault: ReturnType<FaultProxy['plan']>) {
  let hits = 0;
  return (r: ProxiedRequest) => (match(r) && hits++ < times ? fault : 'pass');
}

test('Key Vault answering 503 once, then 200: released on the retry', async (t) => {
  const { e, vault, maa, platform } = await proxied(t);
  vault.plan = first(1, isRelease, {
    status: 503,
    body: '{"error":{"code":"ServiceUnavailable","message":"try again"}}',
  });
  const s = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
  t.is((await s.releaseKey(`${vault.url}/keys/k`)).name, 'k');
  t.is(vault.requests.filter(isRelease).length, 2);
  t.is(releases(e), 1);
  t.is(e.attestation.counters.attestations, 1);
});

test('attestation service answering 503 once, then 200: attested on the retry', async (t) => {
  const { e, vault, maa, platform } = await proxied(t);
  maa.plan = first(1, isAttest, {
    status: 503,
    body: '{"error":{"code":"Busy","message":"later"}}',
  });
  const s = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
  t.is((await s.releaseKey(`${vault.url}/keys/k`)).name, 'k');
  t.is(maa.requests.filter(isAttest).length, 2);
  t.is(e.attestation.counters.attestations, 1);
});

test.serial(
  'Key Vault slower than the per-call timeout: AbortError at the timeout, nothing cached',
  async (t) => {
    const { e, vault, maa, platform } = await proxied(t);
    await exportableKey(e, 'w', 'oct-HSM', e.releasePolicy());
    const s = releaseClient(t, e, platform, {
      attestationEndpoint: maa.url,
      timeoutMs: 8000,
    });
    // Attest first, so the timed call is only the release (a loaded machine may need seconds to attest).
    await s.releaseKey(`${vault.url}/keys/w`);
    let slowAnswered = false;
    vault.plan = first(1, isRelease, { delayMs: 20_000 });
    const slow = vault.plan;
    vault.plan = (r) => {
      const fault = slow(r);
      if (fault !== 'pass') setTimeout(() => (slowAnswered = true), 20_000).unref();
      return fault;
    };
    const error = await t.throwsAsync(s.releaseKey(`${vault.url}/keys/k`), {
      instanceOf: AbortError,
    });
    t.regex(error?.message ?? '', /took longer than 8000 ms/);
    t.false(slowAnswered, 'gave up before the slow answer could arrive');
    t.is(
      vault.requests.filter(isRelease).length,
      2,
      'one for w, one timed out for k: not retried past the deadline',
    );
    // The token stays (it was valid); the key was not cached: the next call releases again.
    const released = await s.releaseKey(`${vault.url}/keys/k`);
    t.is(released.name, 'k');
    t.is(vault.requests.filter(isRelease).length, 3);
    t.is(e.attestation.counters.attestations, 1);
  },
);

test.serial(
  'attestation service slower than the per-call timeout: AbortError, no token cached',
  async (t) => {
    const { e, vault, maa, platform } = await proxied(t);
    maa.plan = first(1, isAttest, { delayMs: 12_000 });
    const s = releaseClient(t, e, platform, {
      attestationEndpoint: maa.url,
      timeoutMs: 4000,
    });
    await t.throwsAsync(s.releaseKey(`${vault.url}/keys/k`), {
      instanceOf: AbortError,
    });
    t.is(vault.requests.filter(isRelease).length, 0, 'no release without a token');
    t.is(e.attestation.counters.attestations, 0);
    await s.releaseKey(`${vault.url}/keys/k`);
    t.is(maa.requests.filter(isAttest).length, 2, 'attested again: the failed attempt left no token');
  },
);

const notJson = [
  {
    name: 'an HTML page',
    contentType: 'text/html',
    body: '<html><body>Bad gateway</body></html>',
  },
  {
    name: 'truncated JSON',
    contentType: 'application/json',
    body: '{"token": "ey',
  },
  { name: 'plain text', contentType: 'text/plain', body: 'OK' },
];

for (const { name, contentType, body } of notJson) {
  test(`attestation service answering 200 with ${name}: AttestationRequestError, nothing cached`, async (t) => {
    const { e, vault, maa, platform } = await proxied(t);
    maa.plan = first(1, isAttest, {
      rewrite: () => Buffer.from(body),
      contentType,
    });
    const s = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
    const error = await t.throwsAsync(s.releaseKey(`${vault.url}/keys/k`), {
      instanceOf: AttestationRequestError,
    });
    t.notRegex(error?.message ?? '', /eyJ/, 'no token in the message');
    t.is(vault.requests.filter(isRelease).length, 0);
    t.is((await s.releaseKey(`${vault.url}/keys/k`)).name, 'k');
    t.is(maa.requests.filter(isAttest).length, 2);
  });

  test(`Key Vault answering the release with ${name}: typed error, no key, nothing cached`, async (t) => {
    const { e, vault, maa, platform } = await proxied(t);
    vault.plan = first(1, isRelease, {
      rewrite: () => Buffer.from(body),
      contentType,
    });
    const s = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
    const error = await t.throwsAsync(s.releaseKey(`${vault.url}/keys/k`));
    t.true(
      error instanceof KeyVaultRequestError || error instanceof ReleaseResponseInvalidError,
      `${error?.name}: ${error?.message}`,
    );
    t.log(`${(error as CvmSkrError | undefined)?.code}: ${error?.message}`);
    t.is((await s.releaseKey(`${vault.url}/keys/k`)).name, 'k');
    t.is(vault.requests.filter(isRelease).length, 2, 'released afresh');
    t.is(e.attestation.counters.attestations, 1, 'the token was fine and is reused');
  });
}

test('Key Vault resetting the connection: bounded retries, typed error, works once it stops', async (t) => {
  const { e, vault, maa, platform } = await proxied(t);
  vault.plan = (r) => (isRelease(r) ? 'reset' : 'pass');
  const s = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
  const error = await t.throwsAsync(s.releaseKey(`${vault.url}/keys/k`), {
    instanceOf: KeyVaultRequestError,
  });
  t.regex(error?.message ?? '', /cannot reach Key Vault/);
  t.is(
    vault.requests.filter(isRelease).length,
    1 + MAX_NETWORK_RETRIES + 2,
    'the first attempt, MAX_NETWORK_RETRIES resends, then maxRetries=2 retries of the SDK',
  );
  t.is(releases(e), 0);
  const before = vault.requests.filter(isRelease).length;
  vault.plan = first(1, isRelease, 'reset');
  t.is((await s.releaseKey(`${vault.url}/keys/k`)).name, 'k', 'one reset, then the retry succeeds');
  t.is(vault.requests.filter(isRelease).length, before + 2);
  t.is(e.attestation.counters.attestations, 1);
});
