import type { Migration, SqlDialect } from './sql-database.js';

/** An ever-growing row id: the same column type on both databases. */
function rowId(dialect: SqlDialect): string {
  return dialect === 'sqlite'
    ? 'INTEGER PRIMARY KEY'
    : 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY';
}

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
];
