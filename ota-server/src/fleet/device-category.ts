import type { UpdateState } from '@edge/formats';
import { UPDATING_STATES, type DeviceCategory } from './store.js';

/** A device not heard from for this long is `notSeen`. */
export const NOT_SEEN_AFTER_MS = 24 * 60 * 60 * 1000;

/** The dashboard's category of a device: the first that applies (the SQL below says the same). */
export function deviceCategory(
  lastSeen: Date | null,
  updateState: UpdateState | null,
  notSeenBefore: Date,
): DeviceCategory {
  if (lastSeen === null || lastSeen.getTime() < notSeenBefore.getTime()) return 'notSeen';
  if (updateState === 'failed') return 'failed';
  if (updateState === 'rolled-back') return 'rolledBack';
  if (updateState !== null && UPDATING_STATES.includes(updateState)) return 'updating';
  return 'upToDate';
}

const UPDATING_LIST = UPDATING_STATES.map((state) => `'${state}'`).join(', ');

/** deviceCategory as a SQL expression over the devices table; one `?`: notSeenBefore (ms). */
export const CATEGORY_SQL = `CASE
  WHEN last_seen_at IS NULL OR last_seen_at < ? THEN 'notSeen'
  WHEN update_state = 'failed' THEN 'failed'
  WHEN update_state = 'rolled-back' THEN 'rolledBack'
  WHEN update_state IN (${UPDATING_LIST}) THEN 'updating'
  ELSE 'upToDate' END`;

/**
 * The condition that picks one category's devices, written so that indexes on update_state
 * and last_seen_at serve it; its `?` are all notSeenBefore (ms), as many as `params` says.
 */
export function categoryCondition(category: DeviceCategory): { sql: string; params: number } {
  const seen = 'last_seen_at >= ?';
  switch (category) {
    case 'notSeen':
      return { sql: '(last_seen_at IS NULL OR last_seen_at < ?)', params: 1 };
    case 'failed':
      return { sql: `(update_state = 'failed' AND ${seen})`, params: 1 };
    case 'rolledBack':
      return { sql: `(update_state = 'rolled-back' AND ${seen})`, params: 1 };
    case 'updating':
      return { sql: `(update_state IN (${UPDATING_LIST}) AND ${seen})`, params: 1 };
    case 'upToDate':
      return {
        sql: `(${seen} AND (update_state IS NULL OR update_state NOT IN ('failed', 'rolled-back', ${UPDATING_LIST})))`,
        params: 1,
      };
  }
}
