import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { FleetEvents, RolloutChange } from '../fleet/fleet-events.js';
import type { RolloutCache } from '../fleet/rollout-cache.js';
import {
  applyRolloutAction,
  rolloutStateFor,
  type RolloutAction,
} from '../fleet/rollout-policy.js';
import { ROLLOUT_GUARD_DEFAULTS, type FleetStore, type Rollout } from '../fleet/store.js';
import { publishedImages } from '../repository/published-images.js';
import { imageTargetName } from '../tuf/index.js';
import { errors } from './errors.js';

export interface NewRollout {
  board: string;
  version: string;
  percent: number;
  failureThresholdPercent?: number;
  minDevicesForThreshold?: number;
}

/**
 * Every change to roll-outs, whoever asks (the operator API, the dashboard, the automatic
 * pause): the same checks, the same optimistic update, the cache invalidated, an event sent.
 */
export class RolloutService {
  constructor(
    private readonly deps: {
      store: FleetStore;
      cache: RolloutCache;
      events: FleetEvents;
      repoDir: string;
      clock: () => Date;
      log: FastifyBaseLogger;
    },
  ) {}

  async create(request: NewRollout): Promise<Rollout> {
    const { store, repoDir, clock } = this.deps;
    const images = await publishedImages(repoDir, request.board);
    if (!images.some((image) => image.version === request.version)) {
      throw errors.releaseNotPublished(imageTargetName(request.board, request.version));
    }
    const now = clock();
    const rollout: Rollout = {
      id: randomUUID(),
      board: request.board,
      version: request.version,
      percent: request.percent,
      state: rolloutStateFor(request.percent),
      createdAt: now,
      updatedAt: now,
      failureThresholdPercent:
        request.failureThresholdPercent ?? ROLLOUT_GUARD_DEFAULTS.failureThresholdPercent,
      minDevicesForThreshold:
        request.minDevicesForThreshold ?? ROLLOUT_GUARD_DEFAULTS.minDevicesForThreshold,
      pausedReason: null,
    };
    await store.createRollout(rollout);
    this.#changed(rollout, 'create');
    return rollout;
  }

  async get(id: string): Promise<Rollout> {
    const rollout = await this.deps.store.rollout(id);
    if (!rollout) throw errors.rolloutNotFound(id);
    return rollout;
  }

  /**
   * An action on a roll-out read now; `expected` refuses it when the roll-out is no longer as
   * the caller saw it (the automatic pause, which decided on older counts).
   */
  async change(
    id: string,
    action: RolloutAction,
    options: { percent?: number; pausedReason?: string; expected?: Rollout } = {},
  ): Promise<Rollout> {
    const rollout = await this.get(id);
    const { percent } = options;
    if (
      options.expected &&
      (options.expected.state !== rollout.state || options.expected.percent !== rollout.percent)
    ) {
      throw errors.rolloutChanged();
    }
    if (action === 'widen' && percent !== undefined && percent < rollout.percent) {
      throw errors.rolloutNarrowing(rollout.percent, percent);
    }
    const next = applyRolloutAction(rollout, action, percent);
    if (!next.ok) throw errors.rolloutState(next.reason);
    const updated: Rollout = {
      ...rollout,
      state: next.state,
      percent: next.percent,
      updatedAt: this.deps.clock(),
      pausedReason: action === 'pause' ? (options.pausedReason ?? null) : null,
    };
    if (action === 'resume') {
      // The operator accepts the failures so far: the automatic pause waits for a further one,
      // also after a restart (kept on the roll-out's row).
      const counts = await this.deps.store.rolloutCounts(rollout);
      updated.acceptedFailures = counts.failed + counts.rolledBack;
    }
    if (!(await this.deps.store.updateRollout(id, rollout, updated))) {
      throw errors.rolloutChanged();
    }
    this.#changed(updated, options.pausedReason ? 'auto-pause' : action);
    return updated;
  }

  /** The automatic pause's settings. */
  async setGuard(
    id: string,
    settings: { failureThresholdPercent?: number; minDevicesForThreshold?: number },
  ): Promise<Rollout> {
    if (!(await this.deps.store.updateRolloutGuard(id, settings, this.deps.clock()))) {
      throw errors.rolloutNotFound(id);
    }
    const updated = await this.get(id);
    this.#changed(updated, 'guard');
    return updated;
  }

  #changed(rollout: Rollout, change: RolloutChange): void {
    this.deps.cache.invalidate();
    this.deps.log.info(
      {
        rollout: {
          id: rollout.id,
          board: rollout.board,
          version: rollout.version,
          percent: rollout.percent,
          state: rollout.state,
          pausedReason: rollout.pausedReason,
        },
        change,
      },
      change === 'create' ? 'roll-out created' : 'roll-out changed',
    );
    this.deps.events.emit('rolloutChanged', { rollout, change });
  }
}
