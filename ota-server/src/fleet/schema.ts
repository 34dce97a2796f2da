import {
  BOARD_ROWS,
  bucketRows,
  COUNTED_STATES,
  countingTriggers,
  COUNTS_TARGET,
  countsSelect,
  newChangeRows,
} from './rollout-counts-sql.js';
import type { Migration, SqlDialect } from './sql-database.js';

/** An ever-growing row id: the same column type on both databases. */
function rowId(dialect: SqlDialect): string {
  return dialect === 'sqlite'
    ? 'INTEGER PRIMARY KEY'
    : 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY';
}

/** `first 4 bytes of SHA-256(rolloutId:deviceId), big-endian, mod 100` (rolloutBucket) in SQL. */
const POSTGRES_ROLLOUT_BUCKET = `CREATE FUNCTION rollout_bucket(rollout_id TEXT, device_id TEXT)
  RETURNS INTEGER IMMUTABLE STRICT PARALLEL SAFE LANGUAGE sql AS $$
    SELECT (((get_byte(h, 0)::BIGINT << 24) | (get_byte(h, 1) << 16) | (get_byte(h, 2) << 8)
      | get_byte(h, 3)) % 100)::INTEGER
    FROM (SELECT sha256(convert_to(rollout_id || ':' || device_id, 'UTF8')) AS h) hashed
  $$`;

/**
 * rollout_bucket as one expression, which the planner inlines: half the time of the function
 * above (a sub-select is never inlined) when a new roll-out hashes its board's device ids.
 */
const POSTGRES_INLINED_ROLLOUT_BUCKET = `CREATE OR REPLACE FUNCTION rollout_bucket(rollout_id TEXT, device_id TEXT)
  RETURNS INTEGER IMMUTABLE STRICT PARALLEL SAFE LANGUAGE sql AS $$
    SELECT (('x' || substr(encode(sha256(convert_to(rollout_id || ':' || device_id, 'UTF8')), 'hex'), 1, 8))::bit(32)::BIGINT % 100)::INTEGER
  $$`;

/**
 * Device id substring search through trigrams when pg_trgm can be had (a trusted extension
 * since PostgreSQL 13); without it the search scans, and the migration still succeeds.
 */
const POSTGRES_TRIGRAM_INDEX = `DO $$ BEGIN
  CREATE EXTENSION IF NOT EXISTS pg_trgm;
  CREATE INDEX devices_by_id_trigram ON devices USING gin (lower(device_id) gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'pg_trgm not available: device search scans the table';
END $$`;

/**
 * The fleet schema. Times are milliseconds since the epoch (BIGINT), JSON is TEXT, so both
 * databases hold the same values. Append migrations; never edit one that has shipped.
 */
export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    statements: (dialect) => [
      `CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        board TEXT NOT NULL,
        public_key_x TEXT NOT NULL,
        enrolled_at BIGINT NOT NULL,
        last_seen_at BIGINT,
        slot TEXT,
        firmware_hash TEXT,
        version TEXT,
        update_state TEXT,
        update_report TEXT,
        desired_version TEXT
      )`,
      `CREATE INDEX devices_by_board ON devices (board, device_id)`,
      `CREATE INDEX devices_by_update_state ON devices (update_state, device_id)`,
      `CREATE TABLE check_ins (
        id ${rowId(dialect)},
        device_id TEXT NOT NULL REFERENCES devices (device_id),
        at BIGINT NOT NULL,
        slot TEXT NOT NULL,
        firmware_hash TEXT NOT NULL,
        version TEXT NOT NULL,
        update_state TEXT NOT NULL,
        update_report TEXT NOT NULL,
        desired_version TEXT
      )`,
      `CREATE INDEX check_ins_by_device ON check_ins (device_id, id)`,
      `CREATE TABLE uplinks (
        id ${rowId(dialect)},
        device_id TEXT NOT NULL REFERENCES devices (device_id),
        at BIGINT NOT NULL,
        module TEXT NOT NULL,
        payload TEXT NOT NULL
      )`,
      `CREATE INDEX uplinks_by_device ON uplinks (device_id, id)`,
      `CREATE TABLE used_token_ids (
        device_id TEXT NOT NULL,
        jti TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        PRIMARY KEY (device_id, jti)
      )`,
      `CREATE INDEX used_token_ids_by_expiry ON used_token_ids (expires_at)`,
      `CREATE TABLE rollouts (
        seq ${rowId(dialect)},
        id TEXT NOT NULL UNIQUE,
        board TEXT NOT NULL,
        version TEXT NOT NULL,
        percent INTEGER NOT NULL CHECK (percent BETWEEN 0 AND 100),
        state TEXT NOT NULL CHECK (state IN ('active', 'paused', 'completed', 'cancelled')),
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      `CREATE INDEX rollouts_by_board ON rollouts (board, seq)`,
    ],
  },
  {
    // App releases: what the device reports of its app (AppReport JSON), null before.
    version: 2,
    statements: () => [
      'ALTER TABLE devices ADD COLUMN app_report TEXT',
      'ALTER TABLE check_ins ADD COLUMN app_report TEXT',
    ],
  },
  {
    // The dashboard: operators and their sessions, the automatic pause, roll-out progress,
    // and the indexes its device table and counts need at 100,000 devices.
    version: 3,
    statements: (dialect) => [
      `CREATE TABLE operators (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_at BIGINT NOT NULL
      )`,
      `CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        username TEXT NOT NULL REFERENCES operators (username) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        last_used_at BIGINT NOT NULL
      )`,
      `CREATE INDEX sessions_by_username ON sessions (username)`,
      `ALTER TABLE rollouts ADD COLUMN failure_threshold_percent INTEGER NOT NULL DEFAULT 10
        CHECK (failure_threshold_percent BETWEEN 1 AND 100)`,
      `ALTER TABLE rollouts ADD COLUMN min_devices_for_threshold INTEGER NOT NULL DEFAULT 10
        CHECK (min_devices_for_threshold >= 1)`,
      'ALTER TABLE rollouts ADD COLUMN paused_reason TEXT',
      `CREATE TABLE rollout_samples (
        id ${rowId(dialect)},
        rollout_id TEXT NOT NULL REFERENCES rollouts (id),
        at BIGINT NOT NULL,
        percent INTEGER NOT NULL,
        targeted INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        updating INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        rolled_back INTEGER NOT NULL
      )`,
      `CREATE INDEX rollout_samples_by_rollout ON rollout_samples (rollout_id, id)`,
      // Each device's bucket per roll-out, filled lazily by the counts (hashing 100,000 ids
      // takes PostgreSQL about half a second; reading them back, tens of milliseconds).
      `CREATE TABLE rollout_buckets (
        rollout_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        bucket SMALLINT NOT NULL,
        PRIMARY KEY (rollout_id, device_id)
      )`,
      // The version a device installs, out of update_report for the roll-out counts.
      'ALTER TABLE devices ADD COLUMN target_version TEXT',
      dialect === 'sqlite'
        ? "UPDATE devices SET target_version = json_extract(update_report, '$.targetVersion')"
        : "UPDATE devices SET target_version = update_report::json->>'targetVersion'",
      // Never seen sorts as the oldest and no version as the lowest, in both directions.
      `CREATE INDEX devices_by_last_seen ON devices (last_seen_at${dialect === 'postgres' ? ' NULLS FIRST' : ''}, device_id)`,
      `CREATE INDEX devices_by_version ON devices (version${dialect === 'postgres' ? ' NULLS FIRST' : ''}, device_id)`,
      // Filters by board and version; covers the overview's grouped count.
      'CREATE INDEX devices_by_board_version ON devices (board, version, update_state, last_seen_at)',
      ...(dialect === 'postgres' ? [POSTGRES_TRIGRAM_INDEX, POSTGRES_ROLLOUT_BUCKET] : []),
    ],
  },
  {
    // Roll-out counts kept by triggers (rollout-counts-sql.ts) on the roll-out's row and its
    // change rows, so the overview costs the same with one roll-out or ten; buckets only for
    // the counted ones.
    // Versions sort by precedence (version-sort-key.ts; the store fills in existing keys).
    // The operator's resume above the threshold, kept across restarts (accepted_failures).
    // Needs rollout_bucket() in SQL: SQLite's is defined before migrating.
    version: 4,
    statements: (dialect) => [
      ...['targeted', 'updated', 'updating', 'failed', 'rolled_back', 'pending'].map(
        (count) => `ALTER TABLE rollouts ADD COLUMN devices_${count} INTEGER NOT NULL DEFAULT 0`,
      ),
      'ALTER TABLE rollouts ADD COLUMN accepted_failures INTEGER',
      ...(dialect === 'postgres' ? [POSTGRES_INLINED_ROLLOUT_BUCKET] : []),
      `DELETE FROM rollout_buckets WHERE rollout_id NOT IN (
        SELECT id FROM rollouts WHERE state IN ${COUNTED_STATES})`,
      `INSERT INTO rollout_buckets (rollout_id, device_id, bucket)
        SELECT r.id, d.device_id, rollout_bucket(r.id, d.device_id)
        FROM rollouts r JOIN devices d ON d.board = r.board
        WHERE r.state IN ${COUNTED_STATES}
        ON CONFLICT DO NOTHING`,
      `UPDATE rollouts SET ${COUNTS_TARGET} = (${countsSelect(bucketRows('0', 'rollouts.percent'))})
        WHERE state IN ${COUNTED_STATES}`,
      // What a cancelled roll-out covered when it ended is not known: what it covers now.
      `UPDATE rollouts SET ${COUNTS_TARGET} = (${countsSelect(
        `${BOARD_ROWS} AND rollout_bucket(rollouts.id, d.device_id) < rollouts.percent`,
      )}) WHERE state = 'cancelled'`,
      `CREATE TABLE rollout_count_changes (
        rollout_id TEXT NOT NULL REFERENCES rollouts (id),
        shard SMALLINT NOT NULL,
        version TEXT NOT NULL,
        ${['targeted', 'updated', 'updating', 'failed', 'rolled_back', 'pending']
          .map((count) => `devices_${count} INTEGER NOT NULL DEFAULT 0`)
          .join(',\n        ')},
        PRIMARY KEY (rollout_id, shard)
      )`,
      newChangeRows('true'),
      ...countingTriggers(dialect),
      `ALTER TABLE devices ADD COLUMN version_key TEXT${dialect === 'postgres' ? ' COLLATE "C"' : ''}`,
      'DROP INDEX devices_by_version',
      `CREATE INDEX devices_by_version_key ON devices (version_key${dialect === 'postgres' ? ' NULLS FIRST' : ''}, device_id)`,
    ],
  },
];
