import type { SqlDialect } from './sql-database.js';
import { UPDATING_STATES, type RolloutCounts } from './store.js';

/**
 * The roll-out counts kept up to date (the overview reads them instead of joining the fleet):
 * the SQL that counts from scratch, that adds the devices a widening brings in, and the
 * triggers that move a device from one count to another when it checks in or enrols. A
 * roll-out's counts are its row's (set when it is made, widened or ends) plus the sum of its
 * COUNT_SHARDS rows in rollout_count_changes (what check-ins moved since): check-ins moving
 * devices at once update different rows, instead of all queueing on one row's lock until
 * their commit. Only active and paused roll-outs are kept up to date: a completed one covers
 * the whole board and is counted when asked; a cancelled one keeps the counts it had when it
 * ended.
 */

/** Rows per roll-out that check-ins add their moves to; a device always uses the same one. */
export const COUNT_SHARDS = 16;

/** The roll-out states whose counts the triggers keep up to date, as a SQL list. */
export const COUNTED_STATES = "('active', 'paused')";

type Standing = Exclude<keyof RolloutCounts, 'targeted'>;
const STANDINGS: readonly Standing[] = ['updated', 'updating', 'failed', 'rolledBack', 'pending'];

/** Each count's column (on rollouts and rollout_count_changes); targeted first, then the rest. */
export const COUNT_COLUMNS: Readonly<Record<keyof RolloutCounts, string>> = {
  targeted: 'devices_targeted',
  updated: 'devices_updated',
  updating: 'devices_updating',
  failed: 'devices_failed',
  rolledBack: 'devices_rolled_back',
  pending: 'devices_pending',
};
const COLUMNS_IN_ORDER = [COUNT_COLUMNS.targeted, ...STANDINGS.map((s) => COUNT_COLUMNS[s])];
/** The counts' columns as an assignment target: `(devices_targeted, …)`. */
export const COUNTS_TARGET = `(${COLUMNS_IN_ORDER.join(', ')})`;

/** Any constant shared by every server: the first key of the per-board counting lock. */
export const COUNTING_LOCK_KEY = 0x0ed6e0a8;

const UPDATING_LIST = UPDATING_STATES.map((state) => `'${state}'`).join(', ');

/** How device row `device` stands in a roll-out of version `version` (SQL expressions). */
export function standingSql(device: string, version: string): string {
  return `(CASE WHEN ${device}.version = ${version} THEN 'updated'
    WHEN ${device}.target_version = ${version} AND ${device}.update_state = 'failed' THEN 'failed'
    WHEN ${device}.target_version = ${version} AND ${device}.update_state = 'rolled-back' THEN 'rolledBack'
    WHEN ${device}.target_version = ${version} AND ${device}.update_state IN (${UPDATING_LIST}) THEN 'updating'
    ELSE 'pending' END)`;
}

/**
 * `SELECT` the six counts (targeted first) of the devices `rows` picks (`FROM … WHERE …`,
 * devices as `d`) for the roll-out row `rollouts` (correlated, or joined in `rows`); `added`
 * adds them to that row's present counts, `named` names them as the row's columns.
 */
export function countsSelect(
  rows: string,
  options: { added?: boolean; named?: boolean } = {},
): string {
  const standing = standingSql('d', 'rollouts.version');
  const counts = [
    'COUNT(*)',
    ...STANDINGS.map((s) => `COUNT(*) FILTER (WHERE ${standing} = '${s}')`),
  ].map((count, n) => {
    const column = COLUMNS_IN_ORDER[n]!;
    const value = options.added ? `rollouts.${column} + ${count}` : count;
    return options.named ? `${value} AS ${column}` : value;
  });
  return `SELECT ${counts.join(', ')} ${rows}`;
}

/** The devices of a roll-out's buckets `from` ≤ bucket < `below` (SQL), as `countsSelect` rows. */
export function bucketRows(from: string, below: string): string {
  return `FROM rollout_buckets b JOIN devices d ON d.device_id = b.device_id
    WHERE b.rollout_id = rollouts.id AND b.bucket >= ${from} AND b.bucket < ${below}`;
}

/** Every device of the roll-out's board (a completed roll-out), as `countsSelect` rows. */
export const BOARD_ROWS = 'FROM devices d WHERE d.board = rollouts.board';

/** Zeroed rows of rollout_count_changes, every shard, for the roll-outs `where` picks. */
export function newChangeRows(where: string): string {
  const shards = Array.from({ length: COUNT_SHARDS }, (_, n) => `SELECT ${n} AS shard`);
  return `INSERT INTO rollout_count_changes (rollout_id, shard, version)
    SELECT rollouts.id, shards.shard, rollouts.version
    FROM rollouts CROSS JOIN (${shards.join(' UNION ALL ')}) shards WHERE ${where}`;
}

/** A roll-out's counts as read: its row's plus its change rows' (2 `?`: its id twice). */
export const KEPT_COUNTS_SQL = `SELECT rollouts.state, ${COLUMNS_IN_ORDER.map(
  (column) => `rollouts.${column} + c.${column} AS ${column}`,
).join(', ')}
  FROM rollouts CROSS JOIN (SELECT ${COLUMNS_IN_ORDER.map(
    (column) => `COALESCE(SUM(${column}), 0) AS ${column}`,
  ).join(', ')} FROM rollout_count_changes WHERE rollout_id = ?) c
  WHERE rollouts.id = ?`;

/** Clears the change rows of roll-out `?` once its row holds all its counts. */
export const CLEAR_CHANGES_SQL = `UPDATE rollout_count_changes SET ${COLUMNS_IN_ORDER.map(
  (column) => `${column} = 0`,
).join(', ')} WHERE rollout_id = ?`;

/** The change row's counts moved for device NEW (and OLD before it, on an update), as SET items. */
function countChanges(before: 'OLD' | null): string {
  const now = standingSql('NEW', 'c.version');
  const was = before && standingSql(before, 'c.version');
  const one = (standing: string, s: Standing) =>
    `(CASE WHEN ${standing} = '${s}' THEN 1 ELSE 0 END)`;
  return [
    ...(before ? [] : [`${COUNT_COLUMNS.targeted} = ${COUNT_COLUMNS.targeted} + 1`]),
    ...STANDINGS.map((s) => {
      const column = COUNT_COLUMNS[s];
      return `${column} = ${column} + ${one(now, s)}${was ? ` - ${one(was, s)}` : ''}`;
    }),
  ].join(',\n      ');
}

/**
 * Device NEW's change rows (as `c`) in the counted roll-outs that cover it; on an update, only
 * those where it moved.
 */
function changeRows(before: 'OLD' | null): string {
  const moved = before
    ? ` AND ${standingSql(before, 'c.version')} <> ${standingSql('NEW', 'c.version')}`
    : '';
  return `c.rollout_id IN (SELECT id FROM rollouts WHERE board = NEW.board
        AND state IN ${COUNTED_STATES} AND rollout_bucket(id, NEW.device_id) < percent)
      AND c.shard = rollout_bucket(c.rollout_id, NEW.device_id) % ${COUNT_SHARDS}${moved}`;
}

/** A new device gets its bucket in each counted roll-out of its board (for later widenings). */
const NEW_DEVICE_BUCKETS = `INSERT INTO rollout_buckets (rollout_id, device_id, bucket)
    SELECT rollouts.id, NEW.device_id, rollout_bucket(rollouts.id, NEW.device_id) FROM rollouts
    WHERE rollouts.board = NEW.board AND rollouts.state IN ${COUNTED_STATES}
    ON CONFLICT DO NOTHING`;
const ON_ENROL = `UPDATE rollout_count_changes AS c SET ${countChanges(null)}
    WHERE ${changeRows(null)}`;
const ON_CHANGE = `UPDATE rollout_count_changes AS c SET ${countChanges('OLD')}
    WHERE ${changeRows('OLD')}`;
/** Only a change of what the counts read wakes the trigger: a progress report does not. */
const STANDING_MAY_CHANGE = `OLD.version IS DISTINCT FROM NEW.version
    OR OLD.update_state IS DISTINCT FROM NEW.update_state
    OR OLD.target_version IS DISTINCT FROM NEW.target_version`;

/**
 * The triggers that keep counted roll-outs' counts as devices enrol and check in. On
 * PostgreSQL they first take the board's counting lock shared: a widening or a new roll-out
 * takes it exclusively, so a device's change lands either before they count or after they
 * committed (then the trigger sees the new percent), never in between.
 */
export function countingTriggers(dialect: SqlDialect): string[] {
  if (dialect === 'sqlite') {
    return [
      `CREATE TRIGGER devices_enrol_in_rollouts AFTER INSERT ON devices BEGIN
        ${NEW_DEVICE_BUCKETS};
        ${ON_ENROL};
      END`,
      `CREATE TRIGGER devices_move_in_rollouts
        AFTER UPDATE OF version, update_state, target_version ON devices
        WHEN ${STANDING_MAY_CHANGE} BEGIN
        ${ON_CHANGE};
      END`,
    ];
  }
  const lock = `PERFORM pg_advisory_xact_lock_shared(${COUNTING_LOCK_KEY}, hashtext(NEW.board));`;
  // Rows locked in one order: two check-ins moving devices in the same roll-outs' shards
  // never deadlock (a scan's order can differ between snapshots).
  const lockRows = (before: 'OLD' | null) =>
    `PERFORM 1 FROM rollout_count_changes AS c WHERE ${changeRows(before)}
      ORDER BY c.rollout_id FOR NO KEY UPDATE;`;
  return [
    `CREATE FUNCTION devices_enrol_in_rollouts() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        ${lock}
        ${NEW_DEVICE_BUCKETS};
        ${lockRows(null)}
        ${ON_ENROL};
        RETURN NULL;
      END $$`,
    `CREATE FUNCTION devices_move_in_rollouts() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        ${lock}
        ${lockRows('OLD')}
        ${ON_CHANGE};
        RETURN NULL;
      END $$`,
    `CREATE TRIGGER devices_enrol_in_rollouts AFTER INSERT ON devices
      FOR EACH ROW EXECUTE FUNCTION devices_enrol_in_rollouts()`,
    `CREATE TRIGGER devices_move_in_rollouts
      AFTER UPDATE OF version, update_state, target_version ON devices
      FOR EACH ROW WHEN (${STANDING_MAY_CHANGE}) EXECUTE FUNCTION devices_move_in_rollouts()`,
  ];
}

/** The counting lock of board `?`, exclusive until the transaction ends (PostgreSQL only). */
export const COUNTING_LOCK_SQL = `SELECT pg_advisory_xact_lock(${COUNTING_LOCK_KEY}, hashtext(?))`;
/** The same for the board of roll-out `?`. */
export const ROLLOUT_COUNTING_LOCK_SQL = `SELECT pg_advisory_xact_lock(${COUNTING_LOCK_KEY}, hashtext(board))
  FROM rollouts WHERE id = ?`;
