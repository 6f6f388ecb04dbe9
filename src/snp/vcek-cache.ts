/**
 * A small TTL cache that shares one in-flight load between concurrent callers, so a burst of verifications for
 * the same chip and TCB makes one request to THIM or AMD KDS (which rate-limits). Failed loads are not cached.
 */
export class VcekCache<V = unknown> {
  readonly #entries = new Map<string, { value: V; expires: number }>();
  readonly #inflight = new Map<string, Promise<V>>();
  readonly #maxEntries: number;
  readonly #defaultTtlSeconds: number;
  readonly #clock: () => number;

  constructor(options: { maxEntries?: number; defaultTtlSeconds?: number; clock?: () => number } = {}) {
    this.#maxEntries = options.maxEntries ?? 256;
    this.#defaultTtlSeconds = options.defaultTtlSeconds ?? 86_400;
    this.#clock = options.clock ?? Date.now;
  }

  /** Returns the cached value for `key`, or runs `load` once for every concurrent caller. */
  async get(key: string, load: () => Promise<{ value: V; ttlSeconds?: number }>): Promise<V> {
    const hit = this.#entries.get(key);
    if (hit !== undefined) {
      if (hit.expires > this.#clock()) return hit.value;
      this.#entries.delete(key);
    }
    const pending = this.#inflight.get(key);
    if (pending !== undefined) return pending;
    const promise = (async () => {
      try {
        const { value, ttlSeconds } = await load();
        const ttl = ttlSeconds ?? this.#defaultTtlSeconds;
        if (ttl > 0) {
          if (this.#entries.size >= this.#maxEntries)
            this.#entries.delete(this.#entries.keys().next().value as string);
          this.#entries.set(key, { value, expires: this.#clock() + ttl * 1000 });
        }
        return value;
      } finally {
        this.#inflight.delete(key);
      }
    })();
    this.#inflight.set(key, promise);
    return promise;
  }

  /** Drops every entry (in-flight loads finish and are stored). */
  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
