import { createHash } from 'node:crypto';
import type { Rollout, RolloutState } from './store.js';

/**
 * A device's place in a roll-out, 0..99: the first 4 bytes of SHA-256(rolloutId:deviceId),
 * big-endian, mod 100. Stable, so widening only adds devices, and new for each roll-out, so
 * the same devices are not always first.
 */
export function rolloutBucket(rolloutId: string, deviceId: string): number {
  return createHash('sha256').update(`${rolloutId}:${deviceId}`).digest().readUInt32BE(0) % 100;
}

export interface DeviceUpdateView {
  deviceId: string;
  /** The version it runs. */
  version: string;
  /** The version it is installing, if any. */
  targetVersion?: string;
}

/**
 * The roll-out that names a device's release, from the board's roll-outs in force (newest
 * first): the first that covers the device. A completed one covers every device; an active
 * one the devices of its buckets; a paused one only those of its buckets that already run or
 * install its version (pausing stops the spread, it does not send anyone back).
 */
export function desiredRollout(
  rolloutsNewestFirst: readonly Rollout[],
  device: DeviceUpdateView,
): Rollout | undefined {
  for (const rollout of rolloutsNewestFirst) {
    switch (rollout.state) {
      case 'completed':
        return rollout;
      case 'active':
        if (rolloutBucket(rollout.id, device.deviceId) < rollout.percent) return rollout;
        break;
      case 'paused':
        if (
          (device.version === rollout.version || device.targetVersion === rollout.version) &&
          rolloutBucket(rollout.id, device.deviceId) < rollout.percent
        ) {
          return rollout;
        }
        break;
      case 'cancelled':
        break;
    }
  }
  return undefined;
}

export type RolloutAction = 'widen' | 'pause' | 'resume' | 'cancel';

/** Widening to 100% completes a roll-out: from then on it is the board's release. */
export function rolloutStateFor(percent: number): RolloutState {
  return percent >= 100 ? 'completed' : 'active';
}

/**
 * What an action does to a roll-out, or why it cannot: active widens, pauses, cancels;
 * paused resumes or cancels; completed can still be cancelled (reverting the board to the
 * release before it); cancelled is final.
 */
export function applyRolloutAction(
  rollout: Pick<Rollout, 'state' | 'percent'>,
  action: RolloutAction,
  percent?: number,
): { ok: true; state: RolloutState; percent: number } | { ok: false; reason: string } {
  const refuse = (reason: string) => ({ ok: false as const, reason });
  switch (action) {
    case 'widen':
      if (rollout.state !== 'active') return refuse(`a ${rollout.state} roll-out cannot widen`);
      if (percent === undefined) return refuse('widen needs a percent');
      return { ok: true, state: rolloutStateFor(percent), percent };
    case 'pause':
      if (rollout.state !== 'active') return refuse(`a ${rollout.state} roll-out cannot pause`);
      return { ok: true, state: 'paused', percent: rollout.percent };
    case 'resume':
      if (rollout.state !== 'paused') return refuse(`a ${rollout.state} roll-out cannot resume`);
      return { ok: true, state: rolloutStateFor(rollout.percent), percent: rollout.percent };
    case 'cancel':
      if (rollout.state === 'cancelled') return refuse('the roll-out is cancelled already');
      return { ok: true, state: 'cancelled', percent: rollout.percent };
  }
}
