/** Checks `SecureKeyRelease` options when the object is made, so a typo fails at once, not at the first release. */
import { InvalidArgumentError } from '../errors.js';
import { checkMs } from '../util/abort.js';
import { RELEASE_ENCRYPTIONS } from './key-wrap.js';
import type { SecureKeyReleaseOptions } from './secure-key-release.js';

/**
 * Every option `SecureKeyRelease` reads. A name outside this list is refused: from JavaScript a misspelt
 * `releaseSignerPins` would otherwise be ignored, and the caller would believe the signer pinned.
 */
const KNOWN_OPTIONS = [
  'attestationEndpoint',
  'attestationCa',
  'credential',
  'platform',
  'enc',
  'vaultOptions',
  'releaseSigningRoots',
  'releaseSignerPins',
  'clock',
  'retry',
  'timeoutMs',
  'tokenRefreshMarginMs',
  'currentVersionTtlMs',
  'onRetry',
  'onEvent',
  'prewarm',
  'agent',
] as const satisfies readonly (keyof SecureKeyReleaseOptions)[];

// Compile-time: an option added to SecureKeyReleaseOptions but not to KNOWN_OPTIONS fails the build here.
type Unlisted = Exclude<keyof SecureKeyReleaseOptions, (typeof KNOWN_OPTIONS)[number]>;
const everyOptionListed: [Unlisted] extends [never] ? true : Unlisted = true;
void everyOptionListed;

interface CheckedOptions {
  attestationEndpoint?: unknown;
  enc?: unknown;
  timeoutMs?: unknown;
  tokenRefreshMarginMs?: unknown;
  currentVersionTtlMs?: unknown;
  retry?: { maxRetries?: unknown; baseDelayMs?: unknown; maxDelayMs?: unknown };
  onRetry?: unknown;
  prewarm?: unknown;
  platform?: unknown;
  clock?: unknown;
}

export function checkReleaseOptions(options: CheckedOptions | undefined): void {
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError('SecureKeyRelease needs an options object');
  const unknown = Object.keys(options).filter((name) => !(KNOWN_OPTIONS as readonly string[]).includes(name));
  if (unknown.length > 0) {
    throw new InvalidArgumentError(
      `SecureKeyRelease has no option ${unknown.map((name) => JSON.stringify(name)).join(', ')}; its options are ${KNOWN_OPTIONS.join(', ')}`,
    );
  }
  if (typeof options.attestationEndpoint !== 'string' || options.attestationEndpoint === '')
    throw new InvalidArgumentError('SecureKeyRelease needs attestationEndpoint (a https URL)');
  if (options.enc !== undefined && !(RELEASE_ENCRYPTIONS as readonly unknown[]).includes(options.enc)) {
    throw new InvalidArgumentError(
      `enc must be one of ${RELEASE_ENCRYPTIONS.join(', ')}, not ${JSON.stringify(options.enc)}`,
    );
  }
  checkMs(options.timeoutMs, 'timeoutMs');
  checkMs(options.tokenRefreshMarginMs, 'tokenRefreshMarginMs', { allowZero: true });
  checkMs(options.currentVersionTtlMs, 'currentVersionTtlMs', { allowZero: true });
  if (options.onRetry !== undefined && typeof options.onRetry !== 'function')
    throw new InvalidArgumentError('onRetry must be a function');
  if (options.prewarm !== undefined && typeof options.prewarm !== 'boolean')
    throw new InvalidArgumentError('prewarm must be true or false');
  checkPlatformOption(options.platform);
  if (options.clock !== undefined && typeof options.clock !== 'function')
    throw new InvalidArgumentError('clock must be a function returning a Date');
  const retry = options.retry;
  if (retry === undefined) return;
  if (typeof retry !== 'object' || retry === null)
    throw new InvalidArgumentError('retry must be an object');
  const max = retry.maxRetries;
  if (max !== undefined && (typeof max !== 'number' || !Number.isInteger(max) || max < 0 || max > 100)) {
    throw new InvalidArgumentError(`retry.maxRetries must be an integer from 0 to 100, not ${String(max)}`);
  }
  checkMs(retry.baseDelayMs, 'retry.baseDelayMs', { allowZero: true });
  checkMs(retry.maxDelayMs, 'retry.maxDelayMs', { allowZero: true });
  if (
    typeof retry.baseDelayMs === 'number' &&
    typeof retry.maxDelayMs === 'number' &&
    retry.baseDelayMs > retry.maxDelayMs
  ) {
    throw new InvalidArgumentError('retry.baseDelayMs must not exceed retry.maxDelayMs');
  }
}

/**
 * `platform` is `'auto'` or an object with the platform methods (a JavaScript caller can pass anything, e.g.
 * the name of an emulated platform, which is made with the emulator's `e.platform(name)` instead).
 */
function checkPlatformOption(platform: unknown): void {
  if (platform === undefined || platform === 'auto') return;
  const methods = ['collectEvidence', 'transferKey', 'close'] as const;
  if (
    typeof platform !== 'object' ||
    platform === null ||
    methods.some((m) => typeof (platform as Record<string, unknown>)[m] !== 'function')
  ) {
    throw new InvalidArgumentError(
      `platform must be 'auto' or a platform object (${methods.join(', ')}), not ${
        typeof platform === 'string' ? JSON.stringify(platform.slice(0, 64)) : typeof platform
      }: open an emulated one with the emulator's platform(name), real hardware with openTpm/detectPlatform`,
    );
  }
}
