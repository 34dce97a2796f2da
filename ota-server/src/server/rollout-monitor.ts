import type { FastifyBaseLogger } from 'fastify';
import type { FleetEventMap, FleetEvents } from '../fleet/fleet-events.js';
import type { RolloutCache } from '../fleet/rollout-cache.js';
import { rolloutGuard } from '../fleet/rollout-guard.js';
import type { FleetStore } from '../fleet/store.js';
import { ApiError } from './errors.js';
import type { RolloutService } from './rollout-service.js';

interface CheckOptions {
  /** Record a progress sample. */
  sample: boolean;
}

/**
 * Watches active roll-outs: a progress sample when one changes and every `sampleSeconds`,
 * and the automatic pause (rollout-guard.ts) after check-ins that report a failure of an
 * active roll-out's version and at each sample. Checks of one roll-out never overlap: a
 * burst of failures makes one check now and one more after it.
 */
export class RolloutMonitor {
  readonly #running = new Map<string, Promise<void>>();
  readonly #queued = new Map<string, CheckOptions>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(
    private readonly deps: {
      store: FleetStore;
      events: FleetEvents;
      cache: RolloutCache;
      service: RolloutService;
      log: FastifyBaseLogger;
      clock: () => Date;
      sampleSeconds: number;
    },
  ) {}

  start(): void {
    this.deps.events.on('checkIn', this.#onCheckIn);
    this.deps.events.on('rolloutChanged', this.#onRolloutChanged);
    this.#timer = setInterval(() => void this.sampleActive(), this.deps.sampleSeconds * 1000);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    this.deps.events.off('checkIn', this.#onCheckIn);
    this.deps.events.off('rolloutChanged', this.#onRolloutChanged);
    this.#queued.clear();
    await this.idle();
  }

  /** Resolves once no check runs or waits (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all(this.#running.values());
  }

  /** A sample of every active roll-out, and the guard's verdict on each. */
  async sampleActive(): Promise<void> {
    try {
      const rollouts = await this.deps.store.listRollouts();
      for (const rollout of rollouts) {
        if (rollout.state === 'active') this.#schedule(rollout.id, { sample: true });
      }
    } catch (error) {
      this.deps.log.warn({ err: error }, 'sampling roll-outs failed');
    }
  }

  readonly #onCheckIn = ({ board, report }: FleetEventMap['checkIn'][0]): void => {
    const { state, targetVersion } = report.update;
    if ((state !== 'failed' && state !== 'rolled-back') || targetVersion === undefined) return;
    this.deps.cache.inForce(board).then(
      (rollouts) => {
        for (const rollout of rollouts) {
          if (rollout.state === 'active' && rollout.version === targetVersion) {
            this.#schedule(rollout.id, { sample: false });
          }
        }
      },
      (error: unknown) => this.deps.log.warn({ err: error }, 'reading roll-outs failed'),
    );
  };

  readonly #onRolloutChanged = ({ rollout }: FleetEventMap['rolloutChanged'][0]): void => {
    this.#schedule(rollout.id, { sample: true });
  };

  #schedule(id: string, options: CheckOptions): void {
    if (this.#stopped) return;
    if (this.#running.has(id)) {
      const queued = this.#queued.get(id);
      this.#queued.set(id, { sample: options.sample || (queued?.sample ?? false) });
      return;
    }
    const run = this.#check(id, options)
      .catch((error: unknown) =>
        this.deps.log.warn({ err: error, rollout: id }, 'checking the roll-out failed'),
      )
      .finally(() => {
        this.#running.delete(id);
        const next = this.#queued.get(id);
        this.#queued.delete(id);
        if (next) this.#schedule(id, next);
      });
    this.#running.set(id, run);
  }

  async #check(id: string, options: CheckOptions): Promise<void> {
    const { store, service, clock, log } = this.deps;
    const rollout = await store.rollout(id);
    if (!rollout) return;
    const counts = await store.rolloutCounts(rollout);
    const failures = counts.failed + counts.rolledBack;
    if (options.sample) {
      await store.recordRolloutSample(id, {
        at: clock(),
        percent: rollout.percent,
        targeted: counts.targeted,
        updated: counts.updated,
        updating: counts.updating,
        failed: counts.failed,
        rolledBack: counts.rolledBack,
      });
    }
    if (rollout.state !== 'active') return;
    const verdict = rolloutGuard(counts, rollout);
    // After a resume, only a further failure pauses it again: the operator decided.
    if (!verdict.pause || failures <= (rollout.acceptedFailures ?? -1)) return;
    try {
      await service.change(id, 'pause', { pausedReason: verdict.reason, expected: rollout });
      log.warn({ rollout: id, reason: verdict.reason }, 'roll-out paused by its failure rate');
    } catch (error) {
      // An operator changed it meanwhile: their change stands.
      if (!(error instanceof ApiError && error.statusCode === 409)) throw error;
    }
  }
}
