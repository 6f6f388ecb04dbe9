/**
 * What an operator sees of a release, the Azure SDK way: `@azure/logger` lines (AZURE_LOG_LEVEL), one
 * `@azure/core-tracing` span per step with the Key Vault SDK's own span nested under the release step, counters
 * (`stats()`) and step events (`onEvent`); never a token or key material.
 */
import { useInstrumenter } from '@azure/core-tracing';
import { AzureLogger, setLogLevel } from '@azure/logger';
import test from 'ava';
import type { ReleaseEvent } from '../../../src/keyvault/diagnostics.js';
import { recordingInstrumenter } from '../../helpers/recording-instrumenter.js';
import { emulator, exportableKey, releaseClient } from '../../helpers/e2e-emulator.js';

// The instrumenter and the log level are process-wide: one test at a time.
test.serial("a release is one span per step, the Key Vault call nested under release, parented by the caller's span", async (t) => {
  const { instrumenter, spans } = recordingInstrumenter();
  useInstrumenter(instrumenter);
  const e = await emulator(t);
  await exportableKey(e, 'traced', 'oct-HSM', e.releasePolicy('emulated-azure-vtpm'));
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const skr = releaseClient(t, e, platform);
  const parent = instrumenter.startSpan('app.handleRequest', { packageName: 'app' });
  await skr.releaseKey(`${e.vaultUrl}/keys/traced`, {
    tracingOptions: { tracingContext: parent.tracingContext },
  });
  const ours = spans.filter((s) => s.name.startsWith('SecureKeyRelease.'));
  t.deepEqual(
    ours.map((s) => s.name),
    [
      'SecureKeyRelease.attest',
      'SecureKeyRelease.transfer-key',
      'SecureKeyRelease.evidence',
      'SecureKeyRelease.maa',
      'SecureKeyRelease.release',
      'SecureKeyRelease.verify',
      'SecureKeyRelease.unwrap',
    ],
  );
  const phases = new Set(['SecureKeyRelease.transfer-key', 'SecureKeyRelease.evidence', 'SecureKeyRelease.maa']);
  t.true(ours.every((s) => s.status === 'success' && s.ended));
  t.true(
    ours.every(
      (s) => s.parent?.name === (phases.has(s.name) ? 'SecureKeyRelease.attest' : 'app.handleRequest'),
    ),
    "the attestation's phases are children of attest; the steps are children of the caller's span",
  );
  const sdk = spans.filter((s) => s.parent?.name === 'SecureKeyRelease.release');
  t.true(
    sdk.some((s) => /releaseKey/i.test(s.name)),
    `the SDK's release span is a child of ours (saw ${sdk.map((s) => s.name).join(', ')})`,
  );
});

test.serial('AZURE_LOG_LEVEL=info shows each step with its key id, a cache hit at verbose, and no token', async (t) => {
  const lines: string[] = [];
  const previous = AzureLogger.log;
  AzureLogger.log = (...args: unknown[]) => lines.push(args.map(String).join(' '));
  setLogLevel('verbose');
  t.teardown(() => {
    AzureLogger.log = previous;
    setLogLevel();
  });
  const e = await emulator(t);
  await exportableKey(e, 'logged', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const skr = releaseClient(t, e, platform);
  const keyId = `${e.vaultUrl}/keys/logged`;
  await skr.releaseKey(keyId);
  await skr.releaseKey(keyId);
  const ours = lines.filter((l) => l.startsWith('azure:cvm-skr:'));
  const text = ours.join('\n');
  t.regex(text, /azure:cvm-skr:info attest: done in/);
  for (const step of ['release', 'verify', 'unwrap']) {
    t.regex(text, new RegExp(`azure:cvm-skr:info ${step} \\(${keyId.replace(/[.:/]/g, '\\$&')}\\): done in`));
  }
  t.regex(text, /azure:cvm-skr:verbose cache hit: /);
  t.notRegex(text, /eyJ/, 'no JWT (token or release answer) in any line');
});

test.serial('stats() counts calls, cache hits, coalesced calls, one attestation and one release; onEvent sees each step', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'counted', 'oct-HSM', e.releasePolicy('emulated-sev-guest'));
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const events: ReleaseEvent[] = [];
  const skr = releaseClient(t, e, platform, { onEvent: (event) => events.push(event) });
  const keyId = `${e.vaultUrl}/keys/counted`;
  await Promise.all([skr.releaseKey(keyId), skr.releaseKey(keyId), skr.releaseKey(keyId)]);
  await skr.releaseKey(keyId);
  const stats = skr.stats();
  t.like(stats, { calls: 4, cacheHits: 1, coalesced: 2, attestations: 1, releases: 1, releaseFailures: 0 });
  for (const step of ['transfer-key', 'evidence', 'maa', 'attest', 'release', 'verify', 'unwrap'] as const)
    t.is(typeof stats.lastStepMs[step], 'number', `${step} timed`);
  t.deepEqual(
    events.filter((ev) => ev.type === 'step').map((ev) => (ev.type === 'step' ? `${ev.step}:${ev.outcome}` : '')),
    ['transfer-key:ok', 'evidence:ok', 'maa:ok', 'attest:ok', 'release:ok', 'verify:ok', 'unwrap:ok'],
  );
});
