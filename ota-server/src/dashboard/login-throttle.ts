/**
 * Failed logins per key (a username, an address) within a sliding window, in memory: past
 * `limit` failures a key waits until its oldest failure leaves the window. Each server of a
 * fleet counts its own; that still bounds guessing to a few per quarter hour per server.
 */
export class LoginThrottle {
  readonly #failures = new Map<string, number[]>();

  constructor(
    private readonly options: {
      limit: number;
      windowMs: number;
      now?: () => number;
      /** Keys kept at most: the oldest go first (an attacker cycling addresses fills it). */
      maxKeys?: number;
    } = { limit: 5, windowMs: 15 * 60 * 1000 },
  ) {}

  /** Seconds until every key may try again; 0 when they may now. */
  retryAfterSeconds(keys: readonly string[]): number {
    const now = this.#now();
    let waitMs = 0;
    for (const key of keys) {
      const recent = this.#recent(key, now);
      if (recent.length >= this.options.limit) {
        waitMs = Math.max(
          waitMs,
          recent[recent.length - this.options.limit]! + this.options.windowMs - now,
        );
      }
    }
    return waitMs > 0 ? Math.ceil(waitMs / 1000) : 0;
  }

  failed(keys: readonly string[]): void {
    const now = this.#now();
    for (const key of keys) {
      const recent = this.#recent(key, now);
      recent.push(now);
      // Only the newest `limit` decide the wait.
      if (recent.length > this.options.limit) recent.splice(0, recent.length - this.options.limit);
      this.#failures.delete(key);
      this.#failures.set(key, recent);
    }
    const maxKeys = this.options.maxKeys ?? 100_000;
    for (const key of this.#failures.keys()) {
      if (this.#failures.size <= maxKeys) break;
      this.#failures.delete(key);
    }
  }

  /** A good password clears its username's failures (not the address's). */
  succeeded(key: string): void {
    this.#failures.delete(key);
  }

  #recent(key: string, now: number): number[] {
    const times = (this.#failures.get(key) ?? []).filter((at) => at > now - this.options.windowMs);
    if (times.length === 0) this.#failures.delete(key);
    return times;
  }

  #now(): number {
    return (this.options.now ?? Date.now)();
  }
}
