import { useInstrumenter } from '@azure/core-tracing';
import { AzureLogger, setLogLevel } from '@azure/logger';
import test from 'ava';
import { ReleaseDeniedError } from '../../src/errors.js';
import { ReleaseDiagnostics, type ReleaseEvent } from '../../src/keyvault/diagnostics.js';
import { recordingInstrumenter } from '../helpers/recording-instrumenter.js';

// The logger and the instrumenter are process-wide: these tests run one at a time.
function captureLogs(): { lines: string[]; restore: () => void } {
  const lines: string[] = [];
  const previous = AzureLogger.log;
  AzureLogger.log = (...args: unknown[]) => lines.push(args.map(String).join(' '));
  setLogLevel('verbose');
  return {
    lines,
    restore: () => {
      AzureLogger.log = previous;
      setLogLevel();
    },
  };
}

test.serial('each step is one span named SecureKeyRelease.<step>, and the Key Vault call nests under release', async (t) => {
  const { instrumenter, spans } = recordingInstrumenter();
  useInstrumenter(instrumenter);
  const diagnostics = new ReleaseDiagnostics();
  await diagnostics.step('attest', {}, async () => 'token');
  await diagnostics.step('release', { keyId: 'https://v.example/keys/k' }, async (tracingOptions) => {
    // What the KeyClient does with the options it is given: its own span, child of ours.
    const inner = instrumenter.startSpan('KeyClient.releaseKey', {
      packageName: '@azure/keyvault-keys',
      ...(tracingOptions?.tracingContext ? { tracingContext: tracingOptions.tracingContext } : {}),
    });
    inner.span.end();
  });
  await t.throwsAsync(
    diagnostics.step('unwrap', {}, async () => {
      throw new ReleaseDeniedError('no', { statusCode: 403, reason: 'policy' });
    }),
  );
  t.deepEqual(
    spans.map((s) => [s.name, s.parent?.name, s.status]),
    [
      ['SecureKeyRelease.attest', undefined, 'success'],
      ['SecureKeyRelease.release', undefined, 'success'],
      ['KeyClient.releaseKey', 'SecureKeyRelease.release', undefined],
      ['SecureKeyRelease.unwrap', undefined, 'error'],
    ],
  );
  t.is(spans[1]!.attributes['cvm-skr.key_id'], 'https://v.example/keys/k');
  t.true(spans.every((s) => s.ended));
});

test.serial('AZURE_LOG_LEVEL-style logging names the step, the key id and the error code, and no message text', async (t) => {
  const logs = captureLogs();
  try {
    const diagnostics = new ReleaseDiagnostics();
    await diagnostics.step('release', { keyId: 'https://v.example/keys/k' }, async () => undefined);
    await t.throwsAsync(
      diagnostics.step('attest', {}, async () => {
        throw new ReleaseDeniedError('token eyJhbGciOi.secret.part', { statusCode: 403, reason: 'policy' });
      }),
    );
    diagnostics.retry('attest', 1, 250, 'HTTP 503');
    const text = logs.lines.join('\n');
    t.regex(text, /azure:cvm-skr:info release \(https:\/\/v\.example\/keys\/k\): done in/);
    t.regex(text, /azure:cvm-skr:warning attest: failed after [\d.]+ ms \[ERR_RELEASE_DENIED\]/);
    t.regex(text, /azure:cvm-skr:info attest: retry 1 in 250 ms \(HTTP 503\)/);
    t.notRegex(text, /eyJ|secret/);
  } finally {
    logs.restore();
  }
});

test.serial('stats count steps and cache hits; events reach the hook, and a throwing hook breaks nothing', async (t) => {
  const events: ReleaseEvent[] = [];
  const diagnostics = new ReleaseDiagnostics((event) => {
    events.push(event);
    throw new Error('hook bug');
  });
  diagnostics.call();
  diagnostics.cache('https://v.example/keys/k', false);
  await diagnostics.step('attest', {}, async () => undefined);
  await diagnostics.step('release', { keyId: 'https://v.example/keys/k' }, async () => undefined);
  diagnostics.call();
  diagnostics.cache('https://v.example/keys/k', true);
  const stats = diagnostics.snapshot();
  t.like(stats, { calls: 2, cacheHits: 1, attestations: 1, releases: 1, releaseFailures: 0 });
  t.is(typeof stats.lastStepMs.attest, 'number');
  t.deepEqual(
    events.map((e) => e.type),
    ['cache', 'step', 'step', 'cache'],
  );
  stats.calls = 99;
  t.is(diagnostics.stats.calls, 2, 'snapshot is a copy');
});
