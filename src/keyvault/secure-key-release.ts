/**
 * `SecureKeyRelease`: what a service inside a confidential VM calls to get its key. Attests the platform with
 * MAA (once, and again shortly before the token expires), asks Key Vault to release the key to the platform's
 * transfer key, verifies the answer, unwraps inside the platform, and caches per versioned key id. Concurrent
 * calls share work: one attestation for any number of keys, one release per key.
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import type { TokenCredential } from '@azure/core-auth';
import type { OperationTracingOptions } from '@azure/core-tracing';
import type { KeyClient, KeyClientOptions } from '@azure/keyvault-keys';
import {
  AbortError,
  AttestationRejectedError,
  AttestationRequestError,
  ClosedError,
  ReleaseResponseInvalidError,
  TimeoutError,
} from '../errors.js';
import { AgentClient, type AgentClientOptions, agentSocketFor } from '../agent/client.js';
import { openDetectedPlatform } from '../hal/detect.js';
import type { AttestationPlatform } from '../hal/types.js';
import { AttestationClient, type AttestationResult } from '../maa/client.js';
import { callerSignal, type CancelOptions, deadline, raceAbort, throwIfAborted } from '../util/abort.js';
import { attemptPolicy } from './attempt-policy.js';
import { checkKeyIdScheme, type KeyRef, parseKeyRef } from './key-id.js';
import { LazyDefaultAzureCredential } from './default-credential.js';
import { type ReleaseEvent, type ReleaseStats, ReleaseDiagnostics, type StepOptions } from './diagnostics.js';
import type { ReleaseEncryption } from './key-wrap.js';
import { checkReleaseOptions } from './options.js';
import {
  refusalNeedsKeyState,
  refusedKeyState,
  type RefusedKeyState,
  releaseRefusalError,
  type RestErrorLike,
} from './release-errors.js';
import { parseReleasePolicy, type ReleasePolicy } from './release-policy.js';
import { type ReleasePayload, type ReleaseSignerPin, verifyReleaseResponse } from './release-response.js';
import { MAX_THROTTLED_RETRIES, retryDelay, sleep } from './retry.js';
import { MAX_NETWORK_RETRIES, throttlePolicy } from './throttle-policy.js';
import { unwrapReleasedKey } from './unwrap.js';

export const DEFAULT_RELEASE_ENCRYPTION: ReleaseEncryption = 'RSA_AES_KEY_WRAP_256';

export interface RetryOptions {
  /** Retries after the first attempt, for 408/429/5xx and network errors. Default 3. */
  maxRetries?: number;
  /** First backoff, doubled per retry with full jitter. Default 500 ms. */
  baseDelayMs?: number;
  /**
   * Cap of one backoff. Default 10 000 ms. A service's `Retry-After` (429) is waited in full, plus a jittered
   * backoff; such throttled answers are retried up to 10 times apart from `maxRetries`, and so are attempts
   * that got no answer (timed out, connection refused, reset or dropped).
   */
  maxDelayMs?: number;
}

export interface SecureKeyReleaseOptions {
  /** The MAA endpoint, e.g. `https://sharedeus.eus.attest.azure.net`; also the pinned token issuer. */
  attestationEndpoint: string;
  /** CA certificate(s) for a private attestation endpoint (the emulator's). Default: system roots. */
  attestationCa?: string | readonly string[];
  /** Credential for Key Vault. Default: `DefaultAzureCredential` (managed identity on a VM). */
  credential?: TokenCredential;
  /** `'auto'` (default) picks the hardware `detectPlatform()` finds; or pass a platform (e.g. an emulated one). */
  platform?: 'auto' | AttestationPlatform;
  /** Release wrapping algorithm. Default `RSA_AES_KEY_WRAP_256` (RSA-OAEP-256 + AES key wrap). */
  enc?: ReleaseEncryption;
  /** Passed to every `KeyClient` (e.g. `disableChallengeResourceVerification`, `allowInsecureConnection`). */
  vaultOptions?: KeyClientOptions;
  /** Roots the vault's release signing chain must end at (PEM or DER). Default: the system roots. */
  releaseSigningRoots?: ReadonlyArray<string | Uint8Array>;
  /**
   * Accept only release answers whose signing path matches one of these pins: the SHA-256 of a certificate's
   * SubjectPublicKeyInfo (`{ spkiSha256 }`, base64 or hex) anywhere in the path, or the CA certificate that
   * issued the signing certificate (`{ issuer }`, PEM or DER). Default: any certificate from a trusted root
   * that names the vault host.
   */
  releaseSignerPins?: ReadonlyArray<ReleaseSignerPin>;
  /**
   * The one clock of this instance: attestation tokens (`exp`/`nbf`, and when to attest again), the vTPM AK
   * certificate's lifetime (renewal through IMDS when it is due), release answers (certificate validity) and
   * key-version dates (`notBefore`/`expiresOn`) when explaining a refusal, and `currentVersionTtlMs`. Default: the system clock. Pass an
   * emulator's virtual clock (`() => e.clock.now()`) or a recorded answer's time. A token the vault still
   * refuses as stale by its own clock is replaced once (see `releaseKey`).
   */
  clock?: () => Date;
  retry?: RetryOptions;
  /** Time one `releaseKey` call may take, retries included. Default 60 000 ms. */
  timeoutMs?: number;
  /** Re-attest this long before the token's `exp`. Default 5 minutes (at most half the token's lifetime). */
  tokenRefreshMarginMs?: number;
  /**
   * How long a versionless key id keeps resolving to the version last released, by `clock`. Default 60 000 ms.
   */
  currentVersionTtlMs?: number;
  /** Told before each retry (attestation, or a Key Vault request), e.g. to show progress. Must not throw. */
  onRetry?: (event: RetryEvent) => void;
  /**
   * Told of every step (platform, attest, release, verify, unwrap: duration, outcome, error code), cache hit or
   * miss, coalesced call and retry. Carries no secret. A hook that throws is logged and ignored.
   */
  onEvent?: (event: ReleaseEvent) => void;
  /**
   * Start `prewarm()` at construction: open the platform, create the transfer key and attest in the
   * background, so the first `releaseKey` pays only the release. A failure is reported through `onEvent` and
   * the logs, and the first `releaseKey` attests again. Default false.
   */
  prewarm?: boolean;
  /**
   * Release through the machine's key agent (`cvm-skr agent`) instead of in this process: `{ socket }` or
   * `true` (socket `$CVM_SKR_AGENT_SOCKET`, else `/run/cvm-skr/agent.sock`), `'auto'` (the agent when that
   * socket exists), `false` (never). Unset: the agent when `$CVM_SKR_AGENT_SOCKET` is set and no platform
   * object is passed. With an agent, the agent's own attestation endpoint, platform and vault settings apply.
   */
  agent?: AgentClientOptions | boolean | 'auto';
}

/** Options of a `SecureKeyRelease` that works through the key agent: only `agent` is needed. */
export type SecureKeyReleaseAgentOptions = Partial<SecureKeyReleaseOptions> & {
  agent: AgentClientOptions | true | 'auto';
};

/** What `prewarm()` achieved; it never rejects. */
export type PrewarmResult = { ok: true } | { ok: false; error: Error };

/** One entry of the cached fast path, keyed by the key id string exactly as the caller gave it. */
interface FastEntry {
  key: ReleasedKey;
  /** Versioned ids: the `#keys` entry this hit stands for. */
  cacheKey: string;
  /** Versionless ids: the `#current` mapping this hit stands for (valid while it is still the mapping). */
  versionless?: string;
  current?: { cacheKey: string; until: number };
}

/** Bound of the fast path's map (distinct spellings of key ids); past it the map starts again empty. */
const FAST_PATH_MAX_ENTRIES = 1024;

export interface RetryEvent {
  step: 'attestation' | 'key-vault';
  /** The attempt that failed, from 1. */
  attempt: number;
  /** Why it failed: HTTP status or error code. */
  reason: string;
  /** Wait before the next attempt, when this library chooses it (the Azure SDK chooses its own). */
  delayMs?: number;
}

export interface ReleasedKeyAttributes {
  enabled?: boolean;
  exportable?: boolean;
  createdOn?: Date;
  updatedOn?: Date;
  notBefore?: Date;
  expiresOn?: Date;
  recoveryLevel?: string;
}

export interface ReleasedKey {
  /** The versioned key id. */
  kid: string;
  name: string;
  version: string;
  keyType: string;
  /** The key: private `KeyObject` for RSA/EC, secret `KeyObject` for oct. */
  key: KeyObject;
  attributes: ReleasedKeyAttributes;
  releasePolicy?: ReleasePolicy;
  releasedAt: Date;
}

/**
 * `signal` or `abortSignal` (the Azure SDK's name) cancels this call; other callers sharing the work go on.
 * `tracingOptions` (the Azure SDK's) parents this call's spans; a call that joins work already on its way gets
 * that work's spans.
 */
export interface ReleaseKeyCallOptions extends CancelOptions {
  tracingOptions?: OperationTracingOptions;
}

/** Per-request bound of each Key Vault HTTP attempt (the SDK sets none), so one stalled answer is retried. */
const KEYVAULT_REQUEST_TIMEOUT_MS = 30_000;

const toDate = (value: unknown) => (typeof value === 'number' ? new Date(value * 1000) : undefined);

function attributesOf(raw: Record<string, unknown>): ReleasedKeyAttributes {
  const out: ReleasedKeyAttributes = {};
  if (typeof raw.enabled === 'boolean') out.enabled = raw.enabled;
  if (typeof raw.exportable === 'boolean') out.exportable = raw.exportable;
  if (typeof raw.recoveryLevel === 'string') out.recoveryLevel = raw.recoveryLevel;
  const dates = {
    createdOn: raw.created,
    updatedOn: raw.updated,
    notBefore: raw.nbf,
    expiresOn: raw.exp,
  } as const;
  for (const [field, value] of Object.entries(dates)) {
    const date = toDate(value);
    if (date) out[field as keyof typeof dates] = date;
  }
  return out;
}

function releasePolicyOf(payload: ReleasePayload): ReleasePolicy | undefined {
  const data = payload.response.key.release_policy?.data;
  if (!data) return undefined;
  try {
    return parseReleasePolicy(Buffer.from(data, 'base64url'));
  } catch {
    return undefined;
  }
}

function isRetryableStatus(status: number | undefined): boolean {
  return status === undefined || status === 408 || status === 429 || status >= 500;
}

export class SecureKeyRelease {
  readonly #options: SecureKeyReleaseOptions;
  readonly #enc: ReleaseEncryption;
  readonly #attestation: AttestationClient;
  readonly #lifetime = new AbortController();
  readonly #clients = new Map<string, KeyClient>();
  readonly #keys = new Map<string, ReleasedKey>();
  readonly #current = new Map<string, { cacheKey: string; until: number }>();
  /**
   * Bumped whenever the current version of a key may have changed (invalidation, new-version events): a
   * versionless release that started before the bump must not install its now stale answer as current.
   */
  readonly #generations = new Map<string, number>();
  #epoch = 0;
  readonly #inFlight = new Map<string, Promise<ReleasedKey>>();
  /**
   * Cache hits by the caller's own key id string: no URL parse, signal, timer or promise race on a hit. Each
   * entry is checked against `#keys` / `#current` on use, so whatever drops or replaces those also ends the
   * entry; invalidation and close() empty it too.
   */
  readonly #fast = new Map<string, FastEntry>();
  #platform: Promise<AttestationPlatform> | undefined;
  #ownsPlatform = false;
  #token: { result: AttestationResult; refreshAt: number } | undefined;
  #tokenInFlight: Promise<AttestationResult> | undefined;
  #defaultCredential: TokenCredential | undefined;
  readonly #diagnostics: ReleaseDiagnostics;
  #closed = false;
  /** Set when the key agent does the work (the `agent` option): the public calls delegate to it. */
  readonly #agent: AgentClient | undefined;

  constructor(given: SecureKeyReleaseOptions | SecureKeyReleaseAgentOptions) {
    const agent =
      typeof given === 'object' && given !== null ? agentSocketFor(given.agent, given.platform) : undefined;
    // The agent attests with its own endpoint; the local attestation client below is then never used.
    const options = (
      agent ? { ...given, attestationEndpoint: given.attestationEndpoint ?? 'https://agent.invalid' } : given
    ) as SecureKeyReleaseOptions;
    this.#agent = agent && new AgentClient(agent);
    checkReleaseOptions(options);
    this.#options = options;
    this.#enc = options.enc ?? DEFAULT_RELEASE_ENCRYPTION;
    this.#diagnostics = new ReleaseDiagnostics(options.onEvent);
    this.#attestation = new AttestationClient({
      endpoint: options.attestationEndpoint,
      ...(options.attestationCa !== undefined ? { ca: options.attestationCa } : {}),
      // Tokens and the AK certificate follow the injected clock too, as the service that issues them does.
      ...(options.clock !== undefined ? { now: options.clock } : {}),
    });
    // prewarm() never rejects, so nothing is left unhandled.
    if (options.prewarm === true) void this.prewarm();
  }

  /**
   * Opens the platform, creates the transfer key and attests now, in the background of a service's start-up,
   * so that the first `releaseKey` pays only the release (the token then serves every key until shortly
   * before it expires). Never rejects: resolves `{ ok: false, error }` on failure, which caches nothing (the
   * next `releaseKey` attests again). A `releaseKey` during prewarm joins its attestation; `close()` during
   * prewarm ends it.
   */
  async prewarm(): Promise<PrewarmResult> {
    if (this.#closed) {
      return { ok: false, error: new ClosedError('this SecureKeyRelease is closed; make a new one to prewarm') };
    }
    if (this.#agent) return this.#agent.prewarm();
    const limit = deadline(
      this.#timeoutMs(),
      [this.#lifetime.signal],
      `prewarming took longer than ${this.#timeoutMs()} ms (timeoutMs); is the attestation endpoint reachable?`,
    );
    try {
      await this.#attest(limit.signal);
      return { ok: true };
    } catch (error) {
      return { ok: false, error: error instanceof Error ? error : new Error(String(error)) };
    } finally {
      limit.dispose();
    }
  }

  /**
   * Releases the key `keyId` (`https://<vault>/keys/<name>[/<version>]`) to this machine. A versionless id
   * resolves to the current version. Released keys are cached per versioned id until `close()`.
   */
  async releaseKey(keyId: string, options?: ReleaseKeyCallOptions): Promise<ReleasedKey> {
    if (this.#closed)
      throw new ClosedError('this SecureKeyRelease is closed; make a new one to release more keys');
    if (this.#agent) return this.#agent.releaseKey(keyId, options);
    // The fast path: a key id string already answered from the cache, and a plain (or no) signal that is not
    // aborted. Anything else (two signals, something that is not an AbortSignal) takes the full checks below.
    const fast = this.#fast.get(keyId);
    if (fast !== undefined) {
      const one =
        options === undefined || options.abortSignal === undefined
          ? options?.signal
          : options.signal === undefined
            ? options.abortSignal
            : null;
      if (one === undefined || (one instanceof AbortSignal && !one.aborted)) {
        if (this.#fastValid(fast)) {
          this.#diagnostics.hit(keyId);
          return fast.key;
        }
        this.#fast.delete(keyId);
      }
    }
    return this.#releaseKey(keyId, options ?? {});
  }

  #fastValid(entry: FastEntry): boolean {
    if (entry.current === undefined) return this.#keys.get(entry.cacheKey) === entry.key;
    return (
      this.#current.get(entry.versionless!) === entry.current &&
      entry.current.until > this.#nowMs() &&
      this.#keys.get(entry.current.cacheKey) === entry.key
    );
  }

  /** Remembers a cache answer for `keyId` on the fast path (only after the full checks passed for it). */
  #remember(keyId: string, ref: KeyRef, key: ReleasedKey): void {
    if (this.#closed) return;
    let entry: FastEntry;
    if (ref.version) {
      if (this.#keys.get(ref.cacheKey) !== key) return;
      entry = { key, cacheKey: ref.cacheKey };
    } else {
      const current = this.#current.get(ref.cacheKey);
      if (!current || this.#keys.get(current.cacheKey) !== key) return;
      entry = { key, cacheKey: current.cacheKey, versionless: ref.cacheKey, current };
    }
    if (this.#fast.size >= FAST_PATH_MAX_ENTRIES && !this.#fast.has(keyId)) this.#fast.clear();
    this.#fast.set(keyId, entry);
  }

  async #releaseKey(keyId: string, options: ReleaseKeyCallOptions): Promise<ReleasedKey> {
    // Everything about the call is checked before any work starts: signal, key id, scheme.
    const signal = callerSignal(options);
    throwIfAborted(signal, 'releaseKey');
    const ref = parseKeyRef(keyId);
    checkKeyIdScheme(ref, this.#options.vaultOptions?.allowInsecureConnection);
    this.#diagnostics.call();
    const cached = this.#cached(ref);
    this.#diagnostics.cache(keyId, cached !== undefined);
    if (cached) {
      this.#remember(keyId, ref, cached);
      return cached;
    }
    let shared = this.#inFlight.get(ref.cacheKey);
    if (shared) this.#diagnostics.coalesced(keyId);
    else {
      const mine: Promise<ReleasedKey> = this.#release(ref, keyId, options.tracingOptions).finally(() => {
        if (this.#inFlight.get(ref.cacheKey) === mine) this.#inFlight.delete(ref.cacheKey);
      });
      shared = mine;
      this.#inFlight.set(ref.cacheKey, mine);
    }
    // The call's own deadline: bounds this caller's wait even if a step ignored its signal.
    const timeoutMs = this.#timeoutMs();
    const call = deadline(
      timeoutMs,
      [signal, this.#lifetime.signal],
      `releasing ${ref.name} took longer than ${timeoutMs} ms (timeoutMs); is the attestation endpoint or the vault reachable?`,
    );
    try {
      const key = await raceAbort(shared, call.signal, 'releaseKey');
      this.#remember(keyId, ref, key);
      return key;
    } finally {
      call.dispose();
    }
  }

  /** Forgets cached keys (all, or those of one key name in one vault) so the next call releases again. */
  invalidate(keyId?: string): void {
    // With an agent: asked of the agent; this client's next calls wait for its answer (a refusal is ignored).
    if (this.#agent) {
      if (keyId !== undefined) parseKeyRef(keyId);
      void this.#agent.invalidate(keyId).catch(() => {});
      return;
    }
    this.#fast.clear();
    if (keyId === undefined) {
      this.#keys.clear();
      this.#current.clear();
      this.#inFlight.clear();
      this.#epoch++;
      // Everything means the token too: the next call attests again (e.g. after the machine's state changed).
      this.#token = undefined;
      return;
    }
    const ref = parseKeyRef(keyId);
    const prefix = `${ref.vaultUrl.toLowerCase()}/${ref.name.toLowerCase()}`;
    this.#staleCurrent(prefix);
    for (const map of [this.#keys, this.#current] as Map<string, unknown>[]) {
      for (const key of [...map.keys()]) if (key === prefix || key.startsWith(`${prefix}/`)) map.delete(key);
    }
  }

  /**
   * After a rotation: forgets which version the versionless id of `keyId` resolves to, so the next versionless
   * call releases the newest version, while released versions stay cached (data under them still decrypts
   * without another release or attestation). With a versioned `keyId` that the mapping already names,
   * nothing changes. Returns whether a mapping was dropped.
   */
  invalidateCurrentVersion(keyId: string): boolean {
    const ref = parseKeyRef(keyId);
    // With an agent the answer is not known here: the agent is asked, and false is returned.
    if (this.#agent) {
      void this.#agent.invalidateCurrentVersion(keyId).catch(() => {});
      return false;
    }
    const versionless = ref.version ? ref.cacheKey.slice(0, ref.cacheKey.lastIndexOf('/')) : ref.cacheKey;
    const current = this.#current.get(versionless);
    if (current && current.cacheKey === ref.cacheKey) return false;
    this.#fast.clear();
    this.#staleCurrent(versionless);
    return this.#current.delete(versionless);
  }

  /** Marks what a versionless id resolves to as unknown, also for releases already on their way. */
  #staleCurrent(versionless: string): void {
    this.#generations.set(versionless, (this.#generations.get(versionless) ?? 0) + 1);
    this.#inFlight.delete(versionless);
  }

  #generationOf(versionless: string): string {
    return `${this.#epoch}.${this.#generations.get(versionless) ?? 0}`;
  }

  /** Drops every cached key and token, and closes the platform if this object opened it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#lifetime.abort(new AbortError('SecureKeyRelease was closed'));
    this.#keys.clear();
    this.#current.clear();
    this.#fast.clear();
    this.#token = undefined;
    if (this.#platform && this.#ownsPlatform) {
      const platform = await this.#platform.catch(() => undefined);
      await platform?.close();
    }
  }

  #cached(ref: KeyRef): ReleasedKey | undefined {
    if (ref.version) return this.#keys.get(ref.cacheKey);
    const current = this.#current.get(ref.cacheKey);
    if (!current || current.until <= this.#nowMs()) return undefined;
    return this.#keys.get(current.cacheKey);
  }

  #timeoutMs(): number {
    return this.#options.timeoutMs ?? 60_000;
  }

  /** The shared work's deadline (util/abort.ts: not AbortSignal.timeout, which garbage collection can drop). */
  async #release(
    ref: KeyRef,
    keyId: string,
    tracingOptions: OperationTracingOptions | undefined,
  ): Promise<ReleasedKey> {
    const limit = deadline(
      this.#timeoutMs(),
      [this.#lifetime.signal],
      `releasing ${ref.name} took longer than ${this.#timeoutMs()} ms (timeoutMs)`,
    );
    try {
      return await this.#releaseWithin(ref, limit.signal, { keyId, ...(tracingOptions ? { tracingOptions } : {}) });
    } catch (error) {
      // A step that noticed the deadline says which step it was; the code says it was the time limit.
      if (limit.timedOut && !(error instanceof TimeoutError)) {
        throw new TimeoutError(
          error instanceof AbortError
            ? error.message
            : `releasing ${ref.name} took longer than ${this.#timeoutMs()} ms (timeoutMs)`,
          { timeoutMs: this.#timeoutMs() },
          { cause: error },
        );
      }
      throw error;
    } finally {
      limit.dispose();
    }
  }

  async #releaseWithin(
    ref: KeyRef,
    signal: AbortSignal,
    step: { keyId: string; tracingOptions?: OperationTracingOptions },
    reattested = false,
  ): Promise<ReleasedKey> {
    const cachedToken = this.#token?.result;
    const generation = ref.version ? undefined : this.#generationOf(ref.cacheKey);
    let attestation: AttestationResult;
    try {
      attestation = await this.#attest(signal, step.tracingOptions);
    } catch (error) {
      if (signal.aborted && !this.#lifetime.signal.aborted) {
        throw new AbortError(
          `attesting for ${ref.name} took longer than the ${this.#options.timeoutMs ?? 60_000} ms timeout (timeoutMs); is the attestation endpoint reachable?`,
          { cause: error },
        );
      }
      throw error;
    }
    const client = await this.#client(ref.vaultUrl);
    // A fresh nonce per release; the vault echoes it as request.nonce in the signed answer, which binds the
    // answer to this request (#checkPayload). The echo is shown by a real Managed HSM answer
    // (test/fixtures/real-release/mhsm-import-release-nonce.json); no recording of a regular vault sent one.
    const nonce = randomBytes(16).toString('base64url');
    let jws: string;
    try {
      jws = await this.#diagnostics.step('release', step, async (tracingOptions) => {
        const result = await client.releaseKey(ref.name, attestation.token, {
          ...(ref.version ? { version: ref.version } : {}),
          nonce,
          algorithm: this.#enc,
          abortSignal: signal,
          ...(tracingOptions ? { tracingOptions } : {}),
        });
        return result.value;
      });
    } catch (error) {
      // A cached token the vault refuses may have gone stale (expired by the vault's clock, or attested
      // before the machine changed): drop it and try once more with a fresh attestation.
      if (
        !reattested &&
        attestation === cachedToken &&
        (error as RestErrorLike)?.statusCode === 403 &&
        !signal.aborted
      ) {
        const previous = this.#token;
        if (previous?.result === attestation) this.#token = undefined;
        try {
          return await this.#releaseWithin(ref, signal, step, true);
        } catch (retryError) {
          if (!(retryError instanceof AttestationRejectedError || retryError instanceof AttestationRequestError))
            throw retryError;
          // The fresh attempt could not even attest: keep the token that still serves other keys, and let the
          // first refusal, explained, say what is wrong.
          if (this.#token === undefined && !this.#closed) this.#token = previous;
        }
      }
      throw await this.#releaseError(error, ref, client, attestation, signal);
    }
    const { payload, responseRef } = await this.#diagnostics.step('verify', step, async () => {
      const verified = await verifyReleaseResponse(jws, {
        vaultUrl: ref.vaultUrl,
        now: this.#now(),
        ...(this.#options.releaseSigningRoots ? { trustedRoots: this.#options.releaseSigningRoots } : {}),
        ...(this.#options.releaseSignerPins ? { signerPins: this.#options.releaseSignerPins } : {}),
      });
      return { payload: verified.payload, responseRef: this.#checkPayload(verified.payload, ref, nonce) };
    });
    const released = payload.response.key.key;
    const key = await this.#diagnostics.step('unwrap', step, () =>
      unwrapReleasedKey(released, {
        transferKey: attestation.transferKey,
        enc: this.#enc,
      }),
    );
    const releasePolicy = releasePolicyOf(payload);
    const result: ReleasedKey = {
      kid: released.kid,
      name: responseRef.name,
      version: responseRef.version!,
      keyType: released.kty,
      key,
      attributes: attributesOf(payload.response.key.attributes),
      ...(releasePolicy ? { releasePolicy } : {}),
      releasedAt: this.#now(),
    };
    if (this.#closed) return result;
    this.#keys.set(responseRef.cacheKey, result);
    if (!ref.version && this.#generationOf(ref.cacheKey) === generation) {
      this.#current.set(ref.cacheKey, {
        cacheKey: responseRef.cacheKey,
        until: this.#nowMs() + (this.#options.currentVersionTtlMs ?? 60_000),
      });
    }
    return result;
  }

  #now(): Date {
    return this.#options.clock?.() ?? new Date();
  }

  /** The same clock in milliseconds, allocating nothing when it is the system clock (the cached path's cost). */
  #nowMs(): number {
    const clock = this.#options.clock;
    return clock === undefined ? Date.now() : clock().getTime();
  }

  /**
   * The answer must be for what we asked: our nonce (a genuinely signed answer to an earlier request, e.g. for
   * a version since disabled, is refused), same enc, same key, and the version asked for (if any).
   */
  #checkPayload(payload: ReleasePayload, ref: KeyRef, nonce: string): KeyRef {
    const refuse = (why: string) =>
      new ReleaseResponseInvalidError(`release response rejected: ${why}`, { check: 'binding' });
    if (payload.request.nonce !== nonce) {
      throw refuse(
        payload.request.nonce === undefined
          ? 'it does not echo the nonce this release sent (request.nonce is missing): a replayed answer?'
          : 'its request.nonce is not the nonce this release sent: a replayed answer?',
      );
    }
    if (payload.request.enc !== this.#enc) {
      throw refuse(`it was wrapped with ${payload.request.enc}, but ${this.#enc} was asked for`);
    }
    let asked: KeyRef;
    let answered: KeyRef;
    try {
      asked = parseKeyRef(payload.request.kid);
      answered = parseKeyRef(payload.response.key.key.kid);
    } catch (error) {
      throw refuse(`its key ids do not parse (${(error as Error).message})`);
    }
    // Host, not port: a vault reached through a proxy or load balancer names itself by its own address. The
    // signature and the signer-names-host check already tie the answer to this host.
    const host = (url: string) => new URL(url).hostname.toLowerCase();
    const sameKey = (r: KeyRef) =>
      host(r.vaultUrl) === host(ref.vaultUrl) && r.name.toLowerCase() === ref.name.toLowerCase();
    if (!sameKey(asked) || !sameKey(answered))
      throw refuse(`it is for ${payload.response.key.key.kid}, not ${ref.name}`);
    if (!answered.version) throw refuse('the released key id carries no version');
    // request.kid has no version when the release named none (test/fixtures/real-release/*.jws); when it has
    // one, it is the version released.
    if (asked.version && asked.version.toLowerCase() !== answered.version.toLowerCase()) {
      throw refuse(`request.kid names version ${asked.version}, but version ${answered.version} was released`);
    }
    if (ref.version && answered.version.toLowerCase() !== ref.version.toLowerCase()) {
      throw refuse(`version ${answered.version} came back for a request of version ${ref.version}`);
    }
    return answered;
  }

  async #platformInstance(): Promise<AttestationPlatform> {
    if (this.#options.platform && this.#options.platform !== 'auto') return this.#options.platform;
    if (!this.#platform) {
      // close() closes only a platform opened before it; none may open after (e.g. a prewarm still starting).
      if (this.#closed) throw new ClosedError('this SecureKeyRelease was closed while attesting');
      this.#ownsPlatform = true;
      this.#platform = this.#diagnostics.step('platform', {}, () => openDetectedPlatform());
      this.#platform.catch(() => {
        this.#platform = undefined;
      });
    }
    return this.#platform;
  }

  /** One attestation at a time; its token serves every key and vault until shortly before it expires. */
  #attest(signal: AbortSignal, tracingOptions?: OperationTracingOptions): Promise<AttestationResult> {
    const now = this.#now().getTime();
    if (this.#token && now < this.#token.refreshAt) return Promise.resolve(this.#token.result);
    if (!this.#tokenInFlight) {
      this.#tokenInFlight = this.#diagnostics
        .step('attest', tracingOptions ? { tracingOptions } : {}, (inner) =>
          // The phases (transfer key, evidence, MAA) are child spans of the attest span.
          this.#attestWithRetry(signal, inner ? { tracingOptions: inner } : {}),
        )
        .then((result) => {
          const lifetime = result.expiresAt.getTime() - this.#now().getTime();
          const margin = Math.min(this.#options.tokenRefreshMarginMs ?? 5 * 60_000, lifetime / 2);
          if (!this.#closed)
            this.#token = {
              result,
              refreshAt: result.expiresAt.getTime() - margin,
            };
          return result;
        })
        .finally(() => {
          this.#tokenInFlight = undefined;
        });
    }
    return this.#tokenInFlight;
  }

  async #attestWithRetry(signal: AbortSignal, stepOptions: StepOptions): Promise<AttestationResult> {
    const platform = await this.#platformInstance();
    const retry = this.#options.retry ?? {};
    const maxRetries = retry.maxRetries ?? 3;
    // Throttled answers (429 with Retry-After) have their own budget: the service said when to come back. So
    // have attempts that got no answer (an overloaded service drops or leaves connections): MAX_NETWORK_RETRIES.
    let throttled = 0;
    let unanswered = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        // A fresh nonce per attempt: the client checks the token echoes it, so an older token replayed for
        // this platform is refused.
        return await this.#attestation.attest(platform, {
          nonce: randomBytes(32),
          signal,
          phase: (phase, run) => this.#diagnostics.step(phase, stepOptions, run),
        });
      } catch (error) {
        if (error instanceof AttestationRequestError) {
          if (error.statusCode === 400) {
            throw new AttestationRejectedError(
              `the attestation service rejected this machine's evidence: ${error.message}`,
              {
                statusCode: 400,
                ...(error.serviceCode ? { serviceCode: error.serviceCode } : {}),
              },
              { cause: error },
            );
          }
          const isThrottled = error.statusCode === 429 && error.retryAfterMs !== undefined;
          const isUnanswered = error.statusCode === undefined;
          const budgetLeft = isThrottled
            ? throttled < MAX_THROTTLED_RETRIES
            : isUnanswered
              ? unanswered < MAX_NETWORK_RETRIES
              : attempt - throttled - unanswered < maxRetries;
          if (isRetryableStatus(error.statusCode) && budgetLeft && !signal.aborted) {
            if (isThrottled) throttled++;
            if (isUnanswered) unanswered++;
            const delayMs = retryDelay(attempt, error.retryAfterMs, retry);
            notify(this.#onRetry, {
              step: 'attestation',
              attempt: attempt + 1,
              reason: error.statusCode === undefined ? 'no answer' : `HTTP ${error.statusCode}`,
              delayMs,
            });
            await sleep(delayMs, signal);
            continue;
          }
        }
        throw error;
      }
    }
  }

  /** Retries go to the caller's hook and to the diagnostics (log, counters, event). */
  readonly #onRetry = (event: RetryEvent): void => {
    this.#diagnostics.retry(
      event.step === 'attestation' ? 'attest' : 'release',
      event.attempt,
      event.delayMs ?? 0,
      event.reason,
    );
    this.#options.onRetry?.(event);
  };

  /** Counters since construction: calls, cache hits, coalesced calls, attestations, releases, retries, step times. */
  stats(): ReleaseStats {
    return this.#diagnostics.snapshot();
  }

  async #client(vaultUrl: string): Promise<KeyClient> {
    let client = this.#clients.get(vaultUrl);
    if (!client) {
      // The Azure SDK loads at the first release, not at import (test/index-startup.test.ts).
      const { KeyClient } = await import('@azure/keyvault-keys');
      client = this.#clients.get(vaultUrl);
      if (client) return client;
      const retry = this.#options.retry ?? {};
      const credential =
        this.#options.credential ?? (this.#defaultCredential ??= new LazyDefaultAzureCredential());
      client = new KeyClient(vaultUrl, credential, {
        ...this.#options.vaultOptions,
        additionalPolicies: [
          ...(this.#options.vaultOptions?.additionalPolicies ?? []),
          // Outside the attempt policy: every resend after a 429 is an attempt with its own timeout.
          { policy: throttlePolicy(retry), position: 'perRetry' },
          {
            policy: attemptPolicy(KEYVAULT_REQUEST_TIMEOUT_MS, this.#onRetry),
            position: 'perRetry',
          },
        ],
        // The pipeline's own policies retry 408/429/5xx and network errors with jittered exponential backoff
        // and honour Retry-After; they do not retry 400/401/403.
        retryOptions: {
          maxRetries: retry.maxRetries ?? 3,
          retryDelayInMs: retry.baseDelayMs ?? 500,
          maxRetryDelayInMs: retry.maxDelayMs ?? 10_000,
          ...this.#options.vaultOptions?.retryOptions,
        },
      });
      this.#clients.set(vaultUrl, client);
    }
    return client;
  }

  /** The coded error for a failed release request; reads the key's state only when the explanation needs it. */
  async #releaseError(
    error: unknown,
    ref: KeyRef,
    client: KeyClient,
    attestation: AttestationResult,
    signal: AbortSignal,
  ): Promise<Error> {
    if (signal.aborted) {
      return this.#lifetime.signal.aborted
        ? new AbortError('SecureKeyRelease was closed during the release', {
            cause: error,
          })
        : new AbortError(`releasing ${ref.name} took longer than ${this.#options.timeoutMs ?? 60_000} ms`, {
            cause: error,
          });
    }
    const keyState = refusalNeedsKeyState(error) ? await this.#readKeyState(client, ref) : undefined;
    return releaseRefusalError(error, ref, {
      claims: attestation.claims,
      ...(keyState ? { keyState } : {}),
      now: this.#now(),
    });
  }

  /** The key's release policy and validity, read after a refusal to explain it (needs keys/get). */
  async #readKeyState(client: KeyClient, ref: KeyRef): Promise<RefusedKeyState | undefined> {
    try {
      return refusedKeyState(await client.getKey(ref.name, ref.version ? { version: ref.version } : {}), ref);
    } catch {
      return undefined;
    }
  }
}

function notify(onRetry: SecureKeyReleaseOptions['onRetry'], event: RetryEvent): void {
  try {
    onRetry?.(event);
  } catch {
    // A progress callback must not change the outcome of a release.
  }
}
