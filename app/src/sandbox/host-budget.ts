/**
 * A token bucket the guest cannot go into debt with: `tryTake` takes the tokens now or
 * refuses (a host function then answers EDGE_EQUOTA). One second's worth may be saved up.
 */
export class HostBudget {
  #tokens: number;
  #updatedAt: number;

  constructor(
    readonly perSecond: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#tokens = perSecond;
    this.#updatedAt = now();
  }

  tryTake(count: number): boolean {
    const now = this.now();
    this.#tokens = Math.min(
      this.perSecond,
      this.#tokens + ((now - this.#updatedAt) / 1000) * this.perSecond,
    );
    this.#updatedAt = now;
    if (count > this.#tokens) return false;
    this.#tokens -= count;
    return true;
  }
}
