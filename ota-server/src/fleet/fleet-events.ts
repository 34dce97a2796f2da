import { EventEmitter } from 'node:events';
import type { DeviceReport, Rollout } from './store.js';

export type RolloutChange =
  'create' | 'widen' | 'pause' | 'resume' | 'cancel' | 'guard' | 'auto-pause';

export interface FleetEventMap {
  /** A device checked in (after its state was stored). */
  checkIn: [{ deviceId: string; board: string; report: DeviceReport }];
  /** A roll-out was created or changed through this server (after it was stored). */
  rolloutChanged: [{ rollout: Rollout; change: RolloutChange }];
}

/**
 * What happens to the fleet inside this process, for those who watch it (the dashboard's
 * live view, the automatic pause): publishers do not know their listeners. Listeners run
 * inside emit(), so they return at once and catch their own errors.
 */
export class FleetEvents extends EventEmitter<FleetEventMap> {}
