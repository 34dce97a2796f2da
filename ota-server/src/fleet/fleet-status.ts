/**
 * How devices and roll-outs stand: types only and no imports, so the dashboard's browser code
 * can share them without pulling in Node (store.ts re-exports them).
 */

/** A device's place on the dashboard; the first that applies. */
export type DeviceCategory = 'notSeen' | 'failed' | 'rolledBack' | 'updating' | 'upToDate';

export type RolloutState = 'active' | 'paused' | 'completed' | 'cancelled';

/** How the board's devices in a roll-out's buckets stand; each counted once. */
export interface RolloutCounts {
  targeted: number;
  /** Running its version. */
  updated: number;
  /** Downloading, applying, verifying or rebooting into its version. */
  updating: number;
  /** Their update to its version failed before the reboot. */
  failed: number;
  /** The new slot did not come up: the bootloader went back. */
  rolledBack: number;
  /** The rest: not started yet. */
  pending: number;
}
