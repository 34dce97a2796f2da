import type { RolloutCounts } from './store.js';

export interface RolloutGuardSettings {
  /** 1..100: the failure rate that pauses the roll-out. */
  failureThresholdPercent: number;
  /** Attempts needed before the rate counts: two failures of three prove little. */
  minDevicesForThreshold: number;
}

export type RolloutGuardVerdict =
  { pause: false; reason: string } | { pause: true; reason: string; failurePercent: number };

/**
 * Whether a roll-out should pause itself: of the devices that attempted its version (updated,
 * failed or rolled back), at least `minDevicesForThreshold`, the share that failed or rolled
 * back reached `failureThresholdPercent`. Devices still updating have not decided yet.
 */
export function rolloutGuard(
  counts: Pick<RolloutCounts, 'updated' | 'failed' | 'rolledBack'>,
  settings: RolloutGuardSettings,
): RolloutGuardVerdict {
  const failures = counts.failed + counts.rolledBack;
  const attempted = counts.updated + failures;
  if (attempted === 0) return { pause: false, reason: 'no device attempted the update yet' };
  if (attempted < settings.minDevicesForThreshold) {
    return {
      pause: false,
      reason: `${attempted} of ${settings.minDevicesForThreshold} attempts needed before the failure rate counts`,
    };
  }
  const failurePercent = (failures / attempted) * 100;
  // Integer comparison: 3 of 30 is exactly 10%, whatever floating point makes of it.
  const reached = failures * 100 >= settings.failureThresholdPercent * attempted;
  const rate = `failure rate ${Math.round(failurePercent)}% (${failures} of ${attempted})`;
  return reached
    ? {
        pause: true,
        failurePercent,
        reason: `${rate} reached the ${settings.failureThresholdPercent}% threshold`,
      }
    : { pause: false, reason: `${rate} below the ${settings.failureThresholdPercent}% threshold` };
}
