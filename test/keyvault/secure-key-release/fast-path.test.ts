/**
 * The cached fast path of `releaseKey` and `prewarm()`, against the emulator (its MAA counts attestations, its
 * vault records release decisions). Behaviour and counts only: no wall-clock thresholds. No wire format is
 * involved here beyond what the release tests already cover (the fast path answers without any request).
 */
import test from 'ava';
import { AbortError, ClosedError } from '../../../src/errors.js';
import type { AttestationPlatform } from '../../../src/hal/types.js';
import type { ReleaseEvent } from '../../../src/keyvault/diagnostics.js';
import { emulator, exportableKey, releaseClient } from '../../helpers/e2e-emulator.js';

/** Counts `new URL(...)` and `setTimeout(...)` while `run` runs (globals: the tests below are serial). */
async function countUrlsAndTimers(run: () => Promise<void>): Promise<{ urls: number; timers: number }> {
  const OriginalUrl = globalThis.URL;
  const originalSetTimeout = globalThis.setTimeout;
  let urls = 0;
  let timers = 0;
  globalThis.URL = class extends OriginalUrl {
    constructor(...args: ConstructorParameters<typeof URL>) {
      super(...args);
      urls++;
    }
  } as typeof URL;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    timers++;
    return originalSetTimeout(...args);
  }) as typeof setTimeout;
  try {
    await run();
  } finally {
    globalThis.URL = OriginalUrl;
    globalThis.setTimeout = originalSetTimeout;
  }
  return { urls, timers };
}

test.serial('a cached key is answered without parsing a URL or starting a timer, and stats() and onEvent still count the hits', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'hot', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const events: ReleaseEvent[] = [];
  const skr = releaseClient(t, e, platform, { onEvent: (event) => events.push(event) });
  const keyId = `${e.vaultUrl}/keys/hot`;
  const first = await skr.releaseKey(keyId);
  const signal = new AbortController().signal;
  const counted = await countUrlsAndTimers(async () => {
    for (let i = 0; i < 100; i++) t.is(await skr.releaseKey(keyId, i % 2 ? { signal } : {}), first);
  });
  t.deepEqual(counted, { urls: 0, timers: 0 });
  t.like(skr.stats(), { calls: 101, cacheHits: 100, attestations: 1, releases: 1 });
  t.is(events.filter((ev) => ev.type === 'cache' && ev.hit && ev.keyId === keyId).length, 100);
  t.is(e.vault.releaseDecisions().length, 1);
});

test.serial('an already-aborted signal rejects a cached key before anything, and counts no call', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'aborted', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const skr = releaseClient(t, e, platform);
  const keyId = `${e.vaultUrl}/keys/aborted`;
  await skr.releaseKey(keyId);
  await skr.releaseKey(keyId);
  const controller = new AbortController();
  controller.abort();
  await t.throwsAsync(skr.releaseKey(keyId, { signal: controller.signal }), { instanceOf: AbortError });
  await t.throwsAsync(skr.releaseKey(keyId, { abortSignal: controller.signal }), { instanceOf: AbortError });
  t.like(skr.stats(), { calls: 2, cacheHits: 1 });
});

test.serial('a versionless id is answered from the fast path only while its current-version mapping is valid (currentVersionTtlMs)', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'ttl', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const realNow = Date.now;
  let offset = 0;
  Date.now = () => realNow() + offset;
  t.teardown(() => {
    Date.now = realNow;
  });
  const skr = releaseClient(t, e, platform, { currentVersionTtlMs: 60_000 });
  const keyId = `${e.vaultUrl}/keys/ttl`;
  await skr.releaseKey(keyId);
  await skr.releaseKey(keyId);
  t.like(skr.stats(), { cacheHits: 1, releases: 1 });
  offset = 61_000;
  await skr.releaseKey(keyId);
  t.like(skr.stats(), { cacheHits: 1, releases: 2 }, 'past the TTL the versionless id asks the vault again');
  // The versioned id of what was released stays cached however old the versionless mapping is.
  const versioned = (await skr.releaseKey(keyId)).kid;
  offset = 10 * 61_000;
  await skr.releaseKey(versioned);
  await skr.releaseKey(versioned);
  t.like(skr.stats(), { releases: 2, cacheHits: 4 });
  t.is(e.vault.releaseDecisions().length, 2);
});

test.serial('invalidate(), invalidateCurrentVersion() and close() end fast-path hits', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'dropped', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const skr = releaseClient(t, e, platform);
  const keyId = `${e.vaultUrl}/keys/dropped`;
  const released = await skr.releaseKey(keyId);
  await skr.releaseKey(keyId);
  await skr.releaseKey(released.kid);
  await skr.releaseKey(released.kid);
  t.is(e.vault.releaseDecisions().length, 1);

  skr.invalidate();
  await skr.releaseKey(released.kid);
  t.is(e.vault.releaseDecisions().length, 2, 'invalidate() drops a versioned fast-path entry');

  skr.invalidate(keyId);
  await skr.releaseKey(keyId);
  t.is(e.vault.releaseDecisions().length, 3, 'invalidate(keyId) drops the versionless one');
  await skr.releaseKey(keyId);
  t.is(e.vault.releaseDecisions().length, 3);

  // A new version: the versionless id must move to it once its mapping is dropped.
  const rotated = await e.keyClient().rotateKey('dropped');
  t.true(skr.invalidateCurrentVersion(keyId));
  const next = await skr.releaseKey(keyId);
  t.is(next.version, rotated.properties.version ?? 'missing');
  t.is(e.vault.releaseDecisions().length, 4);

  await skr.close();
  await t.throwsAsync(skr.releaseKey(keyId), { instanceOf: ClosedError, message: /closed/ });
  await t.throwsAsync(skr.releaseKey(next.kid), { instanceOf: ClosedError });
});

test.serial('after prewarm() resolves, the first releaseKey makes no attestation', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'warm', 'oct-HSM', e.releasePolicy('emulated-azure-vtpm'));
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const events: ReleaseEvent[] = [];
  const skr = releaseClient(t, e, platform, { onEvent: (event) => events.push(event) });
  const before = e.attestation.counters.attestations;
  t.deepEqual(await skr.prewarm(), { ok: true });
  t.is(e.attestation.counters.attestations, before + 1);
  const steps = () => events.flatMap((ev) => (ev.type === 'step' ? [ev.step] : []));
  t.deepEqual(steps(), ['transfer-key', 'evidence', 'maa', 'attest']);
  events.length = 0;
  await skr.releaseKey(`${e.vaultUrl}/keys/warm`);
  t.is(e.attestation.counters.attestations, before + 1, 'the release used the prewarmed token');
  t.deepEqual(steps(), ['release', 'verify', 'unwrap']);
  t.like(skr.stats(), { attestations: 1, releases: 1 });
  for (const step of ['transfer-key', 'evidence', 'maa', 'attest', 'release', 'unwrap'] as const)
    t.is(typeof skr.stats().lastStepMs[step], 'number', `${step} timed`);
});

test.serial('prewarm: true at construction attests once in the background; a releaseKey meanwhile joins it', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'boot', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const before = e.attestation.counters.attestations;
  const skr = releaseClient(t, e, platform, { prewarm: true });
  await skr.releaseKey(`${e.vaultUrl}/keys/boot`);
  t.is(e.attestation.counters.attestations, before + 1);
  t.like(skr.stats(), { attestations: 1, releases: 1 });
});

/** The emulated platform, whose evidence fails the first `failures` times. */
function flaky(platform: AttestationPlatform, failures: number): AttestationPlatform {
  let left = failures;
  return {
    kind: platform.kind,
    collectEvidence: (options) =>
      left-- > 0 ? Promise.reject(new Error('evidence unavailable')) : platform.collectEvidence(options),
    transferKey: () => platform.transferKey(),
    close: () => platform.close(),
  };
}

test.serial('a failed prewarm resolves { ok: false }, leaves no unhandled rejection, caches nothing, and the first releaseKey attests', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => process.off('unhandledRejection', onUnhandled));
  const e = await emulator(t);
  await exportableKey(e, 'retry', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const before = e.attestation.counters.attestations;

  // The constructor's prewarm fails and nobody awaits it.
  const background = releaseClient(t, e, flaky(platform, 1), { prewarm: true });
  // The explicit one fails too, and says why.
  const skr = releaseClient(t, e, flaky(platform, 1));
  const result = await skr.prewarm();
  t.false(result.ok);
  t.regex(result.ok ? '' : result.error.message, /evidence unavailable/);
  t.like(skr.stats(), { attestations: 0, attestationFailures: 1 });

  await skr.releaseKey(`${e.vaultUrl}/keys/retry`);
  await background.releaseKey(`${e.vaultUrl}/keys/retry`);
  t.is(e.attestation.counters.attestations, before + 2, 'each first releaseKey attested');
  t.like(skr.stats(), { attestations: 1, releases: 1 });
  await new Promise((resolve) => setImmediate(resolve));
  t.deepEqual(unhandled, []);
});

test.serial('close() during prewarm ends it cleanly: it resolves { ok: false }, nothing is left unhandled, and the instance stays closed', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => process.off('unhandledRejection', onUnhandled));
  const e = await emulator(t);
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const skr = releaseClient(t, e, platform);
  const prewarm = skr.prewarm();
  await skr.close();
  const result = await prewarm;
  t.false(result.ok);
  const after = await skr.prewarm();
  t.true(!after.ok && after.error instanceof ClosedError, 'a prewarm after close() says it is closed');
  await t.throwsAsync(skr.releaseKey(`${e.vaultUrl}/keys/none`), { instanceOf: ClosedError });
  await new Promise((resolve) => setImmediate(resolve));
  t.deepEqual(unhandled, []);
});
