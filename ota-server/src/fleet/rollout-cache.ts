import type { FleetStore, Rollout } from './store.js';

/**
 * The roll-outs in force per board, read at most once per `ttlMs`: a fleet checking in at
 * once asks the same question thousands of times a second. A change made through this
 * server is seen at once (invalidate); one made through another replica within ttlMs.
 */
export class RolloutCache {
  readonly #entries = new Map<string, { at: number; rollouts: Promise<Rollout[]> }>();

  constructor(
    private readonly store: FleetStore,
    private readonly ttlMs = 1000,
  ) {}

  inForce(board: string): Promise<Rollout[]> {
    const now = Date.now();
    const cached = this.#entries.get(board);
    if (cached && now - cached.at < this.ttlMs) return cached.rollouts;
    const rollouts = this.store.rolloutsInForce(board);
    this.#entries.set(board, { at: now, rollouts });
    // A failed read is not kept: the next check-in asks again.
    rollouts.catch(() => this.#entries.delete(board));
    return rollouts;
  }

  invalidate(): void {
    this.#entries.clear();
  }
}
