import { UPDATE_STATES, type UpdateState } from '@edge/formats';
import type { ExecutionContext } from 'ava';
import { rolloutBucket } from '../../src/fleet/rollout-policy.js';
import {
  ROLLOUT_GUARD_DEFAULTS,
  UPDATING_STATES,
  type FleetStore,
  type Rollout,
  type RolloutCounts,
  type RolloutState,
} from '../../src/fleet/store.js';
import { seededRandom } from '../../../app/test/ota/seeded.js';

interface ModelDevice {
  deviceId: string;
  board: string;
  version: string | null;
  state: UpdateState | null;
  targetVersion: string | null;
}

interface ModelRollout {
  id: string;
  board: string;
  version: string;
  percent: number;
  state: RolloutState;
  /** A cancelled roll-out's counts when it ended. */
  frozen?: RolloutCounts;
}

const BOARDS = ['rpi4', 'rpi4', 'qemu'];
const VERSIONS = ['1.0.0', '1.1.0', '1.2.0'];
const TARGETS = [undefined, '1.1.0', '1.2.0'];
const PERCENTS = [0, 1, 10, 30, 50, 75, 99, 100];

/** The counts from scratch: the model's devices of the board in the roll-out's buckets. */
function recount(devices: Iterable<ModelDevice>, rollout: ModelRollout): RolloutCounts {
  const counts = { targeted: 0, updated: 0, updating: 0, failed: 0, rolledBack: 0, pending: 0 };
  const everyone = rollout.state === 'completed';
  for (const device of devices) {
    if (device.board !== rollout.board) continue;
    if (!everyone && rolloutBucket(rollout.id, device.deviceId) >= rollout.percent) continue;
    counts.targeted++;
    const aimed = device.targetVersion === rollout.version;
    if (device.version === rollout.version) counts.updated++;
    else if (aimed && device.state === 'failed') counts.failed++;
    else if (aimed && device.state === 'rolled-back') counts.rolledBack++;
    else if (aimed && device.state !== null && UPDATING_STATES.includes(device.state)) {
      counts.updating++;
    } else counts.pending++;
  }
  return counts;
}

/**
 * Drives a store through a random sequence of enrolments, check-ins, new roll-outs,
 * widenings, pauses, resumes and cancels, checking after each step that every roll-out's
 * counts equal a recount from scratch of a model of the fleet. With `concurrent`, some steps
 * run a widening or a new roll-out at the same time as check-ins and enrolments.
 */
export async function checkRolloutCounts(
  t: ExecutionContext,
  store: FleetStore,
  options: { seed: number; steps: number; concurrent?: boolean },
): Promise<{ rollouts: number; checkIns: number }> {
  const random = seededRandom(options.seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const devices = new Map<string, ModelDevice>();
  const rollouts: ModelRollout[] = [];
  let clock = 1_800_000_000_000;
  let checkIns = 0;
  const at = () => new Date((clock += 1000));

  const enrol = async () => {
    const device: ModelDevice = {
      deviceId: `dev-${devices.size}-${Math.floor(random() * 1e6)}`,
      board: pick(BOARDS),
      version: null,
      state: null,
      targetVersion: null,
    };
    devices.set(device.deviceId, device);
    const key = `${String(devices.size % 100).padStart(2, '0')}${'k'.repeat(41)}`;
    await store.enrollDevice(
      { deviceId: device.deviceId, board: device.board, publicKeyX: key },
      at(),
    );
  };
  const checkIn = async (device: ModelDevice) => {
    const state = pick(UPDATE_STATES);
    const targetVersion = pick(TARGETS);
    device.version = pick(VERSIONS);
    device.state = state;
    device.targetVersion = targetVersion ?? null;
    checkIns++;
    await store.recordCheckIn(device.deviceId, {
      at: at(),
      slot: 'a',
      firmwareHash: 'f'.repeat(64),
      version: device.version,
      update: { state, ...(targetVersion && { targetVersion }) },
      desiredVersion: null,
    });
  };
  const create = async () => {
    const percent = pick(PERCENTS);
    const model: ModelRollout = {
      id: `r-${rollouts.length}-${Math.floor(random() * 1e6)}`,
      board: pick(BOARDS),
      version: pick(VERSIONS.slice(1)),
      percent,
      state: percent >= 100 ? 'completed' : random() < 0.2 ? 'paused' : 'active',
    };
    rollouts.push(model);
    const when = at();
    const rollout: Rollout = {
      ...model,
      createdAt: when,
      updatedAt: when,
      ...ROLLOUT_GUARD_DEFAULTS,
      pausedReason: null,
    };
    await store.createRollout(rollout);
  };
  /** An action on a roll-out as the policy allows it; false when none fits. */
  const change = async (action: 'widen' | 'pause' | 'resume' | 'cancel'): Promise<boolean> => {
    const from: Record<typeof action, RolloutState[]> = {
      widen: ['active'],
      pause: ['active'],
      resume: ['paused'],
      cancel: ['active', 'paused', 'completed'],
    };
    const candidates = rollouts.filter((rollout) => from[action].includes(rollout.state));
    if (candidates.length === 0) return false;
    const rollout = pick(candidates);
    const expected = { state: rollout.state, percent: rollout.percent };
    let next: { state: RolloutState; percent: number } = { ...expected };
    if (action === 'widen') {
      const percent = Math.min(100, rollout.percent + pick([0, 1, 5, 20, 50, 100]));
      next = { state: percent >= 100 ? 'completed' : 'active', percent };
    } else if (action === 'pause') next.state = 'paused';
    else if (action === 'resume') next.state = 'active';
    else next.state = 'cancelled';
    if (next.state === 'cancelled') rollout.frozen = recount(devices.values(), rollout);
    Object.assign(rollout, next);
    t.true(
      await store.updateRollout(rollout.id, expected, { ...next, updatedAt: at() }),
      `${action} ${rollout.id}`,
    );
    return true;
  };
  const verify = async (step: string) => {
    for (const rollout of rollouts) {
      const expected =
        rollout.state === 'cancelled' ? rollout.frozen! : recount(devices.values(), rollout);
      const counts = await store.rolloutCounts(rollout);
      if (JSON.stringify(counts) !== JSON.stringify(expected)) {
        t.deepEqual(
          counts,
          expected,
          `${step}: ${rollout.state} ${rollout.id} ${rollout.percent}%`,
        );
        throw new Error(`seed ${options.seed}: counts differ after ${step}`);
      }
    }
  };

  for (let n = 0; n < 12; n++) await enrol();
  for (let step = 0; step < options.steps; step++) {
    const roll = random();
    let what: string;
    if (options.concurrent && roll < 0.15) {
      // Check-ins of distinct devices, an enrolment, and a widening or a new roll-out at once.
      const batch = [...devices.values()].filter(() => random() < 0.4);
      const rolloutChange = random() < 0.5 ? change('widen') : create();
      await Promise.all([...batch.map(checkIn), enrol(), rolloutChange]);
      what = `concurrent (${batch.length} check-ins)`;
    } else if (roll < 0.1) {
      await enrol();
      what = 'enrol';
    } else if (roll < 0.6) {
      await checkIn(pick([...devices.values()]));
      what = 'check-in';
    } else if (roll < 0.68 && rollouts.length < 8) {
      await create();
      what = 'create';
    } else if (roll < 0.8) {
      what = (await change('widen')) ? 'widen' : 'no widen';
    } else if (roll < 0.86) {
      what = (await change('pause')) ? 'pause' : 'no pause';
    } else if (roll < 0.92) {
      what = (await change('resume')) ? 'resume' : 'no resume';
    } else if (roll < 0.97) {
      what = (await change('cancel')) ? 'cancel' : 'no cancel';
    } else {
      // Someone else changed it first: a stale update changes nothing.
      const rollout = rollouts[0];
      what = 'stale update';
      if (rollout) {
        t.false(
          await store.updateRollout(
            rollout.id,
            { state: rollout.state, percent: rollout.percent + 1 },
            { state: 'cancelled', percent: rollout.percent, updatedAt: at() },
          ),
        );
      }
    }
    await verify(`step ${step} (${what})`);
  }
  return { rollouts: rollouts.length, checkIns };
}
