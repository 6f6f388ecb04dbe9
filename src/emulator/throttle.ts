/**
 * An opt-in request throttle for the emulated services: at most `limit` admitted requests per fixed window of
 * `windowMs`, as Key Vault states its limits ("maximum transactions allowed in 10 seconds, per vault per
 * region", MicrosoftDocs/azure-docs includes/key-vault-limits.md; learn.microsoft.com/azure/key-vault/general/
 * service-limits). Past the limit the service answers 429 with `Retry-After` in whole seconds until the
 * window ends; refused requests do not count toward the limit ("Failed requests that return a 429 do not
 * count towards the throttle limits", MicrosoftDocs articles/key-vault/general/overview-throttling.md).
 */
export interface ThrottleOptions {
  /** Requests admitted per window. */
  limit: number;
  /** Window length in ms (Key Vault: 10 000). */
  windowMs: number;
}

export type ThrottleVerdict = { admitted: true } | { admitted: false; retryAfterSeconds: number };

export class FixedWindowThrottle {
  readonly #limit: number;
  readonly #windowMs: number;
  readonly #now: () => number;
  #windowStart = -Infinity;
  #count = 0;
  /** Requests refused with 429 since start. */
  throttled = 0;

  constructor(options: ThrottleOptions, now: () => number = Date.now) {
    if (!Number.isInteger(options.limit) || options.limit < 1)
      throw new RangeError('throttle.limit must be a positive integer');
    if (!Number.isFinite(options.windowMs) || options.windowMs <= 0)
      throw new RangeError('throttle.windowMs must be a positive number of ms');
    this.#limit = options.limit;
    this.#windowMs = options.windowMs;
    this.#now = now;
  }

  admit(): ThrottleVerdict {
    const now = this.#now();
    if (now >= this.#windowStart + this.#windowMs) {
      // Windows are aligned to multiples of windowMs, so every client sees the same boundary.
      this.#windowStart = now - (now % this.#windowMs);
      this.#count = 0;
    }
    if (this.#count < this.#limit) {
      this.#count++;
      return { admitted: true };
    }
    this.throttled++;
    const remainingMs = this.#windowStart + this.#windowMs - now;
    return { admitted: false, retryAfterSeconds: Math.max(1, Math.ceil(remainingMs / 1000)) };
  }
}
