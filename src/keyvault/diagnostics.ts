/**
 * What the release path tells an operator, the Azure SDK way:
 * - logs through `@azure/logger` (namespace `cvm-skr`), so `AZURE_LOG_LEVEL=info` (or `setLogLevel`) shows
 *   every step, cache hit and retry beside the Azure SDK's own lines;
 * - a tracing span per step through `@azure/core-tracing`, so an application that installed an instrumenter
 *   (e.g. `@azure/opentelemetry-instrumentation-azure-sdk`) sees attest, release and unwrap as spans, with the
 *   Key Vault call's own span as a child of the release span;
 * - counters (`stats()`) and an event per step (`onEvent`).
 * Nothing secret goes into any of them: key ids, step names, durations and error codes only — never a token,
 * a nonce, key material or a service message (which may echo request data).
 */
import { readFileSync } from 'node:fs';
import type { OperationTracingOptions, TracingClient } from '@azure/core-tracing';
import type { AzureLogger } from '@azure/logger';
import { CvmSkrError } from '../errors.js';

/**
 * The logger and the tracing client load with the first `SecureKeyRelease`, not with `import('cvm-skr')`
 * (@azure/logger alone is about 5 MB of start-up, test/index-startup.test.ts). They are ES-module imports, so the
 * application's own `setLogLevel` and `useInstrumenter` (same module instances) apply. A line logged before
 * they arrive (a cache miss in the same tick) waits for them.
 */
interface Telemetry {
  logger: AzureLogger;
  createTracingClient: typeof import('@azure/core-tracing').createTracingClient;
}
let telemetry: Telemetry | undefined;
let telemetryLoading: Promise<Telemetry> | undefined;
const pendingLines: [keyof AzureLogger & ('verbose' | 'info' | 'warning'), string][] = [];

function loadTelemetry(): Promise<Telemetry> {
  telemetryLoading ??= Promise.all([import('@azure/logger'), import('@azure/core-tracing')]).then(
    ([loggerModule, tracingModule]) => {
      telemetry = {
        logger: loggerModule.createClientLogger('cvm-skr'),
        createTracingClient: tracingModule.createTracingClient,
      };
      for (const [level, line] of pendingLines.splice(0)) telemetry.logger[level](line);
      return telemetry;
    },
  );
  return telemetryLoading;
}

const logger = {
  verbose: (line: string) => log('verbose', line),
  info: (line: string) => log('info', line),
  warning: (line: string) => log('warning', line),
};

function log(level: 'verbose' | 'info' | 'warning', line: string): void {
  if (telemetry) telemetry.logger[level](line);
  else if (pendingLines.length < 1000) pendingLines.push([level, line]);
}

/**
 * The steps of one release, in order. `attest` covers the whole attestation; inside it, `transfer-key` (create
 * the key Key Vault wraps to), `evidence` (HCL/SNP report, quote, certification) and `maa` (the MAA request, and
 * opening and verifying its token) are reported too, so their times add up to about `attest`.
 */
export type ReleaseStep =
  | 'platform'
  | 'attest'
  | 'transfer-key'
  | 'evidence'
  | 'maa'
  | 'release'
  | 'verify'
  | 'unwrap';

export type ReleaseEvent =
  | {
      type: 'step';
      step: ReleaseStep;
      /** The key id as the caller gave it, when the step serves one key. */
      keyId?: string;
      durationMs: number;
      outcome: 'ok' | 'error';
      /** The error's `code` when the step failed with a cvm-skr error. */
      errorCode?: string;
    }
  | { type: 'cache'; keyId: string; hit: boolean }
  | { type: 'coalesced'; keyId: string }
  | { type: 'retry'; step: 'attest' | 'release'; attempt: number; delayMs: number; reason: string };

/** Counters since the `SecureKeyRelease` was created. */
export interface ReleaseStats {
  /** `releaseKey` calls. */
  calls: number;
  /** Calls answered from the cache (no TPM, MAA or Key Vault work). */
  cacheHits: number;
  /** Calls that joined a release already on its way. */
  coalesced: number;
  attestations: number;
  attestationFailures: number;
  releases: number;
  releaseFailures: number;
  retries: number;
  /** Duration of the last run of each step, in milliseconds. */
  lastStepMs: Partial<Record<ReleaseStep, number>>;
}

export interface StepOptions {
  keyId?: string;
  tracingOptions?: OperationTracingOptions;
}

// The same relative path from src/keyvault and dist/keyvault.
const PACKAGE_VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

export class ReleaseDiagnostics {
  readonly #onEvent: ((event: ReleaseEvent) => void) | undefined;
  #tracing: TracingClient | undefined;
  readonly stats: ReleaseStats = {
    calls: 0,
    cacheHits: 0,
    coalesced: 0,
    attestations: 0,
    attestationFailures: 0,
    releases: 0,
    releaseFailures: 0,
    retries: 0,
    lastStepMs: {},
  };

  constructor(onEvent?: (event: ReleaseEvent) => void) {
    this.#onEvent = onEvent;
    void loadTelemetry().catch(() => undefined);
  }

  /** A hook that throws must not break a release. */
  #emit(event: ReleaseEvent): void {
    if (!this.#onEvent) return;
    try {
      this.#onEvent(event);
    } catch (error) {
      logger.warning(`onEvent threw on a ${event.type} event: ${(error as Error)?.name ?? 'error'}`);
    }
  }

  /**
   * Runs one step inside a span named `SecureKeyRelease.<step>`, timing it, counting it, logging it and emitting
   * its event. `fn` gets the tracing options to pass on (so Azure SDK calls become child spans).
   */
  async step<T>(
    step: ReleaseStep,
    options: StepOptions,
    fn: (tracingOptions: OperationTracingOptions | undefined) => Promise<T>,
  ): Promise<T> {
    const { createTracingClient } = telemetry ?? (await loadTelemetry());
    this.#tracing ??= createTracingClient({
      namespace: 'Microsoft.KeyVault',
      packageName: 'cvm-skr',
      packageVersion: PACKAGE_VERSION,
    });
    const tracing = this.#tracing;
    const started = performance.now();
    const label = options.keyId ? `${step} (${options.keyId})` : step;
    logger.verbose(`${label}: started`);
    const finish = (outcome: 'ok' | 'error', error?: unknown) => {
      const durationMs = performance.now() - started;
      this.stats.lastStepMs[step] = durationMs;
      if (step === 'attest') this.stats[outcome === 'ok' ? 'attestations' : 'attestationFailures']++;
      if (step === 'release') this.stats[outcome === 'ok' ? 'releases' : 'releaseFailures']++;
      const errorCode = error instanceof CvmSkrError ? error.code : undefined;
      if (outcome === 'ok') logger.info(`${label}: done in ${durationMs.toFixed(1)} ms`);
      else logger.warning(`${label}: failed after ${durationMs.toFixed(1)} ms [${errorCode ?? 'error'}]`);
      this.#emit({
        type: 'step',
        step,
        ...(options.keyId !== undefined ? { keyId: options.keyId } : {}),
        durationMs,
        outcome,
        ...(errorCode !== undefined ? { errorCode } : {}),
      });
    };
    try {
      const result = await tracing.withSpan(
        `SecureKeyRelease.${step}`,
        { tracingOptions: options.tracingOptions ?? {} },
        (updated) => fn(updated.tracingOptions),
        {
          spanKind: step === 'attest' || step === 'maa' || step === 'release' ? 'client' : 'internal',
          ...(options.keyId !== undefined ? { spanAttributes: { 'cvm-skr.key_id': options.keyId } } : {}),
        },
      );
      finish('ok');
      return result;
    } catch (error) {
      finish('error', error);
      throw error;
    }
  }

  call(): void {
    this.stats.calls++;
  }

  /**
   * A hit on the cached fast path: counts it and tells the hooks, building no string or object when no one
   * listens (the fast path's budget is about a microsecond).
   */
  hit(keyId: string): void {
    this.stats.calls++;
    this.stats.cacheHits++;
    if (telemetry?.logger.verbose.enabled) telemetry.logger.verbose(`cache hit: ${keyId}`);
    if (this.#onEvent) this.#emit({ type: 'cache', keyId, hit: true });
  }

  cache(keyId: string, hit: boolean): void {
    if (hit) this.stats.cacheHits++;
    logger.verbose(`cache ${hit ? 'hit' : 'miss'}: ${keyId}`);
    this.#emit({ type: 'cache', keyId, hit });
  }

  coalesced(keyId: string): void {
    this.stats.coalesced++;
    logger.verbose(`joined the release already on its way: ${keyId}`);
    this.#emit({ type: 'coalesced', keyId });
  }

  retry(step: 'attest' | 'release', attempt: number, delayMs: number, reason: string): void {
    this.stats.retries++;
    logger.info(`${step}: retry ${attempt} in ${Math.round(delayMs)} ms (${reason})`);
    this.#emit({ type: 'retry', step, attempt, delayMs, reason });
  }

  /** A copy the caller may keep. */
  snapshot(): ReleaseStats {
    return { ...this.stats, lastStepMs: { ...this.stats.lastStepMs } };
  }
}
