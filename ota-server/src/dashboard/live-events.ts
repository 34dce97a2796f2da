import type { FastifyBaseLogger } from 'fastify';
import type { FleetEventMap, FleetEvents } from '../fleet/fleet-events.js';
import type { FleetStore } from '../fleet/store.js';
import type { Overview } from './api-json.js';
import { fleetOverview, rolloutViewOf } from './views.js';

export interface LiveListener {
  send(event: 'overview' | 'rollout', data: unknown): void;
  /** The server is closing: end the stream. */
  close(): void;
}

/**
 * The dashboard's live view: listens to the fleet's events and sends each open event stream
 * the overview when it changed (computed at most once per `minIntervalMs`, and only while
 * someone listens) and a roll-out when it changed.
 */
export class LiveEvents {
  readonly #listeners = new Set<LiveListener>();
  #lastSent = '';
  #lastComputedAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #computing: Promise<void> | undefined;
  /** A change came while an overview was waiting or being computed: one more after it. */
  #changedMeanwhile = false;
  #stopped = false;

  constructor(
    private readonly deps: {
      store: FleetStore;
      events: FleetEvents;
      clock: () => Date;
      log: FastifyBaseLogger;
      minIntervalMs?: number;
    },
  ) {}

  start(): void {
    this.deps.events.on('checkIn', this.#onCheckIn);
    this.deps.events.on('rolloutChanged', this.#onRolloutChanged);
  }

  /** Ends every stream (fastify's close waits for open connections). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.deps.events.off('checkIn', this.#onCheckIn);
    this.deps.events.off('rolloutChanged', this.#onRolloutChanged);
    clearTimeout(this.#timer);
    for (const listener of this.#listeners) listener.close();
    this.#listeners.clear();
    await this.#computing;
  }

  get listenerCount(): number {
    return this.#listeners.size;
  }

  /** Adds a stream; resolves to the function that removes it. */
  subscribe(listener: LiveListener): () => void {
    if (this.#stopped) {
      listener.close();
      return () => undefined;
    }
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  overview(): Promise<Overview> {
    return fleetOverview(this.deps.store, this.deps.clock());
  }

  readonly #onCheckIn = (): void => this.#overviewChanged();

  readonly #onRolloutChanged = ({ rollout }: FleetEventMap['rolloutChanged'][0]): void => {
    if (this.#listeners.size > 0) {
      rolloutViewOf(this.deps.store, rollout).then(
        (view) => this.#broadcast('rollout', view),
        (error: unknown) => this.deps.log.warn({ err: error }, 'roll-out view failed'),
      );
    }
    this.#overviewChanged();
  };

  /** Recomputes the overview soon: now if the last one is old enough, else when it is. */
  #overviewChanged(): void {
    if (this.#stopped || this.#listeners.size === 0) return;
    if (this.#timer) {
      this.#changedMeanwhile = true;
      return;
    }
    const interval = this.deps.minIntervalMs ?? 1000;
    const wait = Math.max(0, this.#lastComputedAt + interval - Date.now());
    this.#changedMeanwhile = false;
    this.#timer = setTimeout(() => {
      this.#computing = this.#recompute().finally(() => {
        this.#timer = undefined;
        this.#computing = undefined;
        if (this.#changedMeanwhile) this.#overviewChanged();
      });
    }, wait);
  }

  async #recompute(): Promise<void> {
    this.#lastComputedAt = Date.now();
    if (this.#listeners.size === 0) return;
    try {
      const overview = await this.overview();
      // generatedAt always differs: compare the rest.
      const key = JSON.stringify({ ...overview, generatedAt: '' });
      if (key === this.#lastSent) return;
      this.#lastSent = key;
      this.#broadcast('overview', overview);
    } catch (error) {
      this.deps.log.warn({ err: error }, 'overview for the live view failed');
    }
  }

  #broadcast(event: 'overview' | 'rollout', data: unknown): void {
    for (const listener of this.#listeners) listener.send(event, data);
  }
}
