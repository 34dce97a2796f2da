/**
 * A token bucket for bytes: `rate` tokens a second, up to `burst` saved up. `take` waits
 * until the bytes may go. The rate can change while transfers run.
 */
export class TokenBucket {
  #rate: number;
  #burst: number;
  #tokens: number;
  #updatedAt: number;

  constructor(
    rate: number,
    burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = burst;
    this.#updatedAt = now();
    this.#check();
  }

  get rate(): number {
    return this.#rate;
  }

  get burst(): number {
    return this.#burst;
  }

  /**
   * Changes the limit; tokens saved so far are kept, up to the new burst. A debt (bytes
   * already waiting at the old rate) is dropped, not charged again at the new one.
   */
  setLimit(rate: number, burst = this.#burst): void {
    this.#refill();
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = Math.min(Math.max(this.#tokens, 0), burst);
    this.#check();
  }

  /** Milliseconds to wait before `count` bytes may go (0 when they may go now); takes them. */
  reserve(count: number): number {
    this.#refill();
    if (this.#rate === Infinity) return 0;
    this.#tokens -= count;
    return this.#tokens >= 0 ? 0 : (-this.#tokens / this.#rate) * 1000;
  }

  /** Waits until `count` bytes may go. */
  async take(count: number, signal?: AbortSignal): Promise<void> {
    const wait = this.reserve(count);
    if (wait > 0) await sleep(wait, signal);
  }

  #refill(): void {
    const now = this.now();
    if (this.#rate === Infinity) {
      // No limit: a full bucket (0 x Infinity would make the count NaN).
      this.#tokens = this.#burst;
      this.#updatedAt = now;
      return;
    }
    this.#tokens = Math.min(
      this.#burst,
      this.#tokens + ((now - this.#updatedAt) / 1000) * this.#rate,
    );
    this.#updatedAt = now;
  }

  #check(): void {
    if (!(this.#rate > 0) || !(this.#burst > 0)) {
      throw new RangeError(
        `token bucket: rate and burst must be positive (rate ${this.#rate}, burst ${this.#burst})`,
      );
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
