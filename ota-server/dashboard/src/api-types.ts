import type { DeviceCategory } from '../../src/dashboard/api-json.js';

// The JSON of /dashboard/api/* is the server's (api-json.ts, types only: nothing of the server
// reaches the bundle); here only what the browser adds to it.
export type * from '../../src/dashboard/api-json.js';

/** The order the views list the categories in. */
export const CATEGORIES: readonly DeviceCategory[] = [
  'upToDate',
  'updating',
  'failed',
  'rolledBack',
  'notSeen',
];

export interface NewRollout {
  board: string;
  version: string;
  percent: number;
  failureThresholdPercent: number;
  minDevicesForThreshold: number;
}

export type RolloutAction = 'widen' | 'pause' | 'resume' | 'cancel';
