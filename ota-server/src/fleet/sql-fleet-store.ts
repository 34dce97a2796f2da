import type { AppReport, UpdateReport, UpdateState } from '@edge/formats';
import { CATEGORY_SQL, categoryCondition, deviceCategory } from './device-category.js';
import {
  BOARD_ROWS,
  bucketRows,
  COUNT_COLUMNS,
  COUNTED_STATES,
  COUNTING_LOCK_SQL,
  CLEAR_CHANGES_SQL,
  COUNTS_TARGET,
  countsSelect,
  KEPT_COUNTS_SQL,
  newChangeRows,
  ROLLOUT_COUNTING_LOCK_SQL,
} from './rollout-counts-sql.js';
import { rolloutBucket } from './rollout-policy.js';
import { MIGRATIONS } from './schema.js';
import type { SqlDatabase, SqlStatement, SqlValue } from './sql-database.js';
import {
  type CheckInRecord,
  type DeviceCategory,
  type DeviceDetail,
  type DeviceKeyRecord,
  type DeviceListRow,
  type DevicePageQuery,
  type DeviceQuery,
  type DeviceSortKey,
  type DeviceSummary,
  type EnrollOutcome,
  type FleetGroupCount,
  type FleetStore,
  type OperatorRecord,
  type RetentionPolicy,
  type Rollout,
  type RolloutCounts,
  type RolloutSample,
  type RolloutState,
  type SessionRecord,
  type UplinkRecord,
} from './store.js';
import { versionSortKey } from './version-sort-key.js';

interface DeviceRow {
  device_id: string;
  board: string;
  enrolled_at: number;
  last_seen_at: number | null;
  slot: 'a' | 'b' | null;
  firmware_hash: string | null;
  version: string | null;
  update_report: string | null;
  desired_version: string | null;
  app_report: string | null;
}

interface CheckInRow {
  at: number;
  slot: 'a' | 'b';
  firmware_hash: string;
  version: string;
  update_report: string;
  desired_version: string | null;
  app_report: string | null;
}

interface RolloutRow {
  id: string;
  board: string;
  version: string;
  percent: number;
  state: RolloutState;
  created_at: number;
  updated_at: number;
  failure_threshold_percent: number;
  min_devices_for_threshold: number;
  paused_reason: string | null;
  accepted_failures: number | null;
}

type CountsRow = Record<string, number | string | null>;

interface DeviceListSqlRow {
  device_id: string;
  board: string;
  version: string | null;
  update_state: UpdateState | null;
  target_version: string | null;
  last_seen_at: number | null;
  update_report: string | null;
}

interface SampleRow {
  at: number;
  percent: number;
  targeted: number;
  updated: number;
  updating: number;
  failed: number;
  rolled_back: number;
}

interface SessionRow {
  id_hash: string;
  username: string;
  csrf_token: string;
  created_at: number;
  last_used_at: number;
}

const DEVICE_COLUMNS =
  'device_id, board, enrolled_at, last_seen_at, slot, firmware_hash, version, update_report, desired_version, app_report';
const ROLLOUT_COLUMNS =
  'id, board, version, percent, state, created_at, updated_at, failure_threshold_percent, min_devices_for_threshold, paused_reason, accepted_failures';
const DEVICE_LIST_COLUMNS =
  'device_id, board, version, update_state, target_version, last_seen_at, update_report';

/** Sort keys to columns: never seen and no version sort lowest either way (see the indexes). */
const SORT_COLUMNS: Record<DeviceSortKey, string | undefined> = {
  deviceId: undefined,
  board: 'board',
  version: 'version_key',
  lastSeen: 'last_seen_at',
  state: 'update_state',
};

/** Whether the triggers keep a roll-out's counts (rollout-counts-sql.ts). */
function counted(state: RolloutState): boolean {
  return state === 'active' || state === 'paused';
}

/** The buckets of roll-out `?`'s board's devices that have none yet. */
const FILL_BUCKETS = `INSERT INTO rollout_buckets (rollout_id, device_id, bucket)
  SELECT rollouts.id, d.device_id, rollout_bucket(rollouts.id, d.device_id)
  FROM rollouts JOIN devices d ON d.board = rollouts.board
  WHERE rollouts.id = ? AND NOT EXISTS (
    SELECT 1 FROM rollout_buckets b WHERE b.rollout_id = rollouts.id AND b.device_id = d.device_id
  )
  ON CONFLICT DO NOTHING`;

/** LIKE's wildcards taken literally (the queries say ESCAPE with a backslash). */
function likeLiteral(text: string): string {
  return text.replace(/[\\%_]/g, (sign) => `\\${sign}`);
}

/** The fleet store on any SqlDatabase: the same statements for SQLite and PostgreSQL. */
export class SqlFleetStore implements FleetStore {
  readonly kind: FleetStore['kind'];

  private constructor(private readonly db: SqlDatabase) {
    this.kind = db.dialect;
  }

  /** Opens the store on a database, migrating its schema first. */
  static async open(db: SqlDatabase): Promise<SqlFleetStore> {
    // Migrations and triggers call it.
    db.defineFunction?.('rollout_bucket', (rolloutId, deviceId) =>
      rolloutBucket(String(rolloutId), String(deviceId)),
    );
    try {
      await db.migrate(MIGRATIONS);
      await fillVersionKeys(db);
    } catch (error) {
      await db.close().catch(() => undefined);
      throw error;
    }
    return new SqlFleetStore(db);
  }

  async enrollDevice(device: DeviceKeyRecord, at: Date): Promise<EnrollOutcome> {
    const inserted = await this.db.execute(
      `INSERT INTO devices (device_id, board, public_key_x, enrolled_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (device_id) DO NOTHING`,
      [device.deviceId, device.board, device.publicKeyX, at.getTime()],
    );
    if (inserted === 1) return 'created';
    const existing = await this.deviceKey(device.deviceId);
    return existing?.publicKeyX === device.publicKeyX && existing.board === device.board
      ? 'same'
      : 'conflict';
  }

  async deviceKey(deviceId: string): Promise<DeviceKeyRecord | undefined> {
    const [row] = await this.db.query<{ device_id: string; board: string; public_key_x: string }>(
      'SELECT device_id, board, public_key_x FROM devices WHERE device_id = ?',
      [deviceId],
    );
    return row && { deviceId: row.device_id, board: row.board, publicKeyX: row.public_key_x };
  }

  async useTokenId(deviceId: string, jti: string, expiresAt: Date): Promise<boolean> {
    // A row whose token has expired may be taken again: its token is refused anyway.
    const changed = await this.db.execute(
      `INSERT INTO used_token_ids (device_id, jti, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (device_id, jti) DO UPDATE SET expires_at = excluded.expires_at
       WHERE used_token_ids.expires_at < ?`,
      [deviceId, jti, expiresAt.getTime(), Date.now()],
    );
    return changed === 1;
  }

  async recordCheckIn(deviceId: string, checkIn: CheckInRecord): Promise<void> {
    const report = JSON.stringify(checkIn.update);
    const state = [
      checkIn.at.getTime(),
      checkIn.slot,
      checkIn.firmwareHash,
      checkIn.version,
      checkIn.update.state,
      report,
      checkIn.desiredVersion,
      checkIn.app ? JSON.stringify(checkIn.app) : null,
    ];
    const insert = `INSERT INTO check_ins
      (at, slot, firmware_hash, version, update_state, update_report, desired_version, app_report,
       device_id)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`;
    const update = `UPDATE devices SET last_seen_at = ?, slot = ?, firmware_hash = ?, version = ?,
      update_state = ?, update_report = ?, desired_version = ?, app_report = ?, target_version = ?,
      version_key = ?
      WHERE device_id = ?`;
    const targetVersion = checkIn.update.targetVersion ?? null;
    const versionKey = versionSortKey(checkIn.version);
    if (this.db.dialect === 'postgres') {
      // One statement is one transaction and one round trip, where BEGIN…COMMIT takes four.
      await this.db.execute(`WITH history AS (${insert}) ${update}`, [
        ...state,
        deviceId,
        ...state,
        targetVersion,
        versionKey,
        deviceId,
      ]);
      return;
    }
    await this.db.batch([
      { sql: insert, params: [...state, deviceId] },
      { sql: update, params: [...state, targetVersion, versionKey, deviceId] },
    ]);
  }

  async recordUplink(deviceId: string, uplink: UplinkRecord): Promise<void> {
    await this.db.execute(
      'INSERT INTO uplinks (device_id, at, module, payload) VALUES (?, ?, ?, ?)',
      [deviceId, uplink.at.getTime(), uplink.module, JSON.stringify(uplink.payload ?? null)],
    );
  }

  async listDevices(query: DeviceQuery): Promise<DeviceSummary[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (query.board !== undefined) {
      where.push('board = ?');
      params.push(query.board);
    }
    if (query.state !== undefined) {
      where.push('update_state = ?');
      params.push(query.state);
    }
    if (query.afterDeviceId !== undefined) {
      where.push('device_id > ?');
      params.push(query.afterDeviceId);
    }
    params.push(query.limit);
    const rows = await this.db.query<DeviceRow>(
      `SELECT ${DEVICE_COLUMNS} FROM devices
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY device_id LIMIT ?`,
      params,
    );
    return rows.map(deviceSummaryOf);
  }

  async device(deviceId: string, historyLimit: number): Promise<DeviceDetail | undefined> {
    const [row] = await this.db.query<DeviceRow>(
      `SELECT ${DEVICE_COLUMNS} FROM devices WHERE device_id = ?`,
      [deviceId],
    );
    if (!row) return undefined;
    const checkIns = await this.db.query<CheckInRow>(
      `SELECT at, slot, firmware_hash, version, update_report, desired_version, app_report FROM check_ins
       WHERE device_id = ? ORDER BY id DESC LIMIT ?`,
      [deviceId, historyLimit],
    );
    const uplinks = await this.db.query<{ at: number; module: string; payload: string }>(
      'SELECT at, module, payload FROM uplinks WHERE device_id = ? ORDER BY id DESC LIMIT ?',
      [deviceId, historyLimit],
    );
    return {
      ...deviceSummaryOf(row),
      checkIns: checkIns.map((checkIn) => ({
        at: new Date(checkIn.at),
        slot: checkIn.slot,
        firmwareHash: checkIn.firmware_hash,
        version: checkIn.version,
        update: JSON.parse(checkIn.update_report) as UpdateReport,
        desiredVersion: checkIn.desired_version,
        ...appOf(checkIn.app_report),
      })),
      uplinks: uplinks.map((uplink) => ({
        at: new Date(uplink.at),
        module: uplink.module,
        payload: JSON.parse(uplink.payload) as unknown,
      })),
    };
  }

  async createRollout(rollout: Rollout): Promise<void> {
    const insert: SqlStatement = {
      sql: `INSERT INTO rollouts (${ROLLOUT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      params: [
        rollout.id,
        rollout.board,
        rollout.version,
        rollout.percent,
        rollout.state,
        rollout.createdAt.getTime(),
        rollout.updatedAt.getTime(),
        rollout.failureThresholdPercent,
        rollout.minDevicesForThreshold,
        rollout.pausedReason,
        rollout.acceptedFailures ?? null,
      ],
    };
    const changeRows: SqlStatement = {
      sql: newChangeRows('rollouts.id = ?'),
      params: [rollout.id],
    };
    // A completed roll-out covers the whole board: no buckets, counted when asked.
    if (!counted(rollout.state)) {
      await this.db.batch([insert, changeRows]);
      return;
    }
    const fill: SqlStatement = { sql: FILL_BUCKETS, params: [rollout.id] };
    const count: SqlStatement = {
      sql: `UPDATE rollouts SET ${COUNTS_TARGET} = (${countsSelect(bucketRows('0', 'rollouts.percent'))})
        WHERE id = ?`,
      params: [rollout.id],
    };
    if (this.db.dialect === 'sqlite') {
      await this.db.batch([insert, changeRows, fill, count]);
      return;
    }
    // Hashing the board's ids is the slow part: done before the lock that holds check-ins
    // back, for a row that is not there yet (devices enrolled meanwhile are filled in after).
    await this.db.execute(
      `INSERT INTO rollout_buckets (rollout_id, device_id, bucket)
       SELECT ?, device_id, rollout_bucket(?, device_id) FROM devices WHERE board = ?
       ON CONFLICT DO NOTHING`,
      [rollout.id, rollout.id, rollout.board],
    );
    await this.db.batch([
      { sql: COUNTING_LOCK_SQL, params: [rollout.board] },
      insert,
      changeRows,
      fill,
      count,
    ]);
  }

  async rollout(id: string): Promise<Rollout | undefined> {
    const [row] = await this.db.query<RolloutRow>(
      `SELECT ${ROLLOUT_COLUMNS} FROM rollouts WHERE id = ?`,
      [id],
    );
    return row && rolloutOf(row);
  }

  async listRollouts(board?: string): Promise<Rollout[]> {
    const rows =
      board === undefined
        ? await this.db.query<RolloutRow>(
            `SELECT ${ROLLOUT_COLUMNS} FROM rollouts ORDER BY seq DESC`,
          )
        : await this.db.query<RolloutRow>(
            `SELECT ${ROLLOUT_COLUMNS} FROM rollouts WHERE board = ? ORDER BY seq DESC`,
            [board],
          );
    return rows.map(rolloutOf);
  }

  async rolloutsInForce(board: string): Promise<Rollout[]> {
    const rows = await this.db.query<RolloutRow>(
      `SELECT ${ROLLOUT_COLUMNS} FROM rollouts
       WHERE board = ? AND state <> 'cancelled' AND seq >= (
         SELECT COALESCE(MAX(seq), 0) FROM rollouts WHERE board = ? AND state = 'completed'
       )
       ORDER BY seq DESC`,
      [board, board],
    );
    return rows.map(rolloutOf);
  }

  async updateRollout(
    id: string,
    expected: Pick<Rollout, 'state' | 'percent'>,
    next: Pick<Rollout, 'state' | 'percent' | 'updatedAt'> &
      Partial<Pick<Rollout, 'pausedReason' | 'acceptedFailures'>>,
  ): Promise<boolean> {
    const sets = [
      'state = ?',
      'percent = ?',
      'updated_at = ?',
      'paused_reason = ?',
      'accepted_failures = COALESCE(?, accepted_failures)',
    ];
    const params: SqlValue[] = [
      next.state,
      next.percent,
      next.updatedAt.getTime(),
      next.pausedReason ?? null,
      next.acceptedFailures ?? null,
    ];
    const widening =
      counted(expected.state) && counted(next.state) && next.percent > expected.percent;
    if (widening) {
      // The devices of the buckets it widens over, added to its counts in the same statement.
      sets.push(
        `${COUNTS_TARGET} = (${countsSelect(bucketRows('rollouts.percent', '?'), { added: true })})`,
      );
      params.push(next.percent);
    }
    const freezing = expected.state === 'completed' && next.state === 'cancelled';
    if (freezing) {
      // Its counts were counted when asked: the last ones stay with it, all on its row.
      sets.push(`${COUNTS_TARGET} = (${countsSelect(BOARD_ROWS)})`);
    }
    const update: SqlStatement = {
      sql: `UPDATE rollouts SET ${sets.join(', ')} WHERE id = ? AND state = ? AND percent = ?`,
      params: [...params, id, expected.state, expected.percent],
    };
    let changed: number | undefined;
    if (widening && this.db.dialect === 'postgres') {
      [, changed] = await this.db.batch([{ sql: ROLLOUT_COUNTING_LOCK_SQL, params: [id] }, update]);
    } else if (freezing) {
      // Check-ins leave a completed roll-out's change rows alone: clearing them is safe even
      // when another server cancelled it first.
      [changed] = await this.db.batch([update, { sql: CLEAR_CHANGES_SQL, params: [id] }]);
    } else {
      changed = await this.db.execute(update.sql, update.params);
    }
    if (changed === 1 && !counted(next.state)) {
      // Ended: its buckets are not read again (a completed one covers everyone, a cancelled
      // one keeps its counts). After the commit; prune() takes any left behind.
      await this.db.execute(
        `DELETE FROM rollout_buckets WHERE rollout_id = ? AND NOT EXISTS (
           SELECT 1 FROM rollouts WHERE id = ? AND state IN ${COUNTED_STATES})`,
        [id, id],
      );
    }
    return changed === 1;
  }

  async updateRolloutGuard(
    id: string,
    next: Partial<Pick<Rollout, 'failureThresholdPercent' | 'minDevicesForThreshold'>>,
    updatedAt: Date,
  ): Promise<boolean> {
    const changed = await this.db.execute(
      `UPDATE rollouts SET
         failure_threshold_percent = COALESCE(?, failure_threshold_percent),
         min_devices_for_threshold = COALESCE(?, min_devices_for_threshold),
         updated_at = ?
       WHERE id = ?`,
      [
        next.failureThresholdPercent ?? null,
        next.minDevicesForThreshold ?? null,
        updatedAt.getTime(),
        id,
      ],
    );
    return changed === 1;
  }

  async rolloutCounts(rollout: Pick<Rollout, 'id'>): Promise<RolloutCounts> {
    let [row] = await this.db.query<CountsRow>(KEPT_COUNTS_SQL, [rollout.id, rollout.id]);
    if (row?.state === 'completed') {
      const everyone =
        'FROM rollouts JOIN devices d ON d.board = rollouts.board WHERE rollouts.id = ?';
      [row] = await this.db.query<CountsRow>(countsSelect(everyone, { named: true }), [rollout.id]);
    }
    const number = (key: keyof RolloutCounts) => Number(row?.[COUNT_COLUMNS[key]] ?? 0);
    return {
      targeted: number('targeted'),
      updated: number('updated'),
      updating: number('updating'),
      failed: number('failed'),
      rolledBack: number('rolledBack'),
      pending: number('pending'),
    };
  }

  async recordRolloutSample(rolloutId: string, sample: RolloutSample): Promise<void> {
    await this.db.execute(
      `INSERT INTO rollout_samples
         (rollout_id, at, percent, targeted, updated, updating, failed, rolled_back)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        rolloutId,
        sample.at.getTime(),
        sample.percent,
        sample.targeted,
        sample.updated,
        sample.updating,
        sample.failed,
        sample.rolledBack,
      ],
    );
  }

  async rolloutSamples(rolloutId: string, limit: number): Promise<RolloutSample[]> {
    const rows = await this.db.query<SampleRow>(
      `SELECT at, percent, targeted, updated, updating, failed, rolled_back FROM rollout_samples
       WHERE rollout_id = ? ORDER BY id DESC LIMIT ?`,
      [rolloutId, limit],
    );
    return rows.reverse().map((row) => ({
      at: new Date(row.at),
      percent: row.percent,
      targeted: row.targeted,
      updated: row.updated,
      updating: row.updating,
      failed: row.failed,
      rolledBack: row.rolled_back,
    }));
  }

  async fleetGroups(notSeenBefore: Date): Promise<FleetGroupCount[]> {
    const rows = await this.db.query<{
      board: string;
      version: string | null;
      category: DeviceCategory;
      count: number;
    }>(
      `SELECT board, version, ${CATEGORY_SQL} AS category, COUNT(*) AS count
       FROM devices GROUP BY 1, 2, 3`,
      [notSeenBefore.getTime()],
    );
    return rows.map((row) => ({ ...row, count: Number(row.count) }));
  }

  async devicePage(query: DevicePageQuery): Promise<{ total: number; devices: DeviceListRow[] }> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (query.search !== undefined && query.search !== '') {
      where.push(`lower(device_id) LIKE ? ESCAPE '\\'`);
      params.push(`%${likeLiteral(query.search.toLowerCase())}%`);
    }
    if (query.board !== undefined) {
      where.push('board = ?');
      params.push(query.board);
    }
    if (query.version !== undefined) {
      where.push('version = ?');
      params.push(query.version);
    }
    if (query.category !== undefined) {
      const condition = categoryCondition(query.category);
      where.push(condition.sql);
      for (let n = 0; n < condition.params; n++) params.push(query.notSeenBefore.getTime());
    }
    const filter = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const direction = query.order === 'desc' ? 'DESC' : 'ASC';
    const nulls = query.order === 'desc' ? 'NULLS LAST' : 'NULLS FIRST';
    const column = SORT_COLUMNS[query.sort];
    const orderBy = column
      ? `${column} ${direction} ${nulls}, device_id ${direction}`
      : `device_id ${direction}`;
    const [rows, [counted]] = await Promise.all([
      this.db.query<DeviceListSqlRow>(
        `SELECT ${DEVICE_LIST_COLUMNS} FROM devices ${filter} ORDER BY ${orderBy} LIMIT ? OFFSET ?`,
        [...params, query.limit, query.offset],
      ),
      this.db.query<{ total: number }>(`SELECT COUNT(*) AS total FROM devices ${filter}`, params),
    ]);
    return {
      total: Number(counted?.total ?? 0),
      devices: rows.map((row) => {
        const lastSeen = row.last_seen_at === null ? null : new Date(row.last_seen_at);
        const report =
          row.update_report === null ? undefined : (JSON.parse(row.update_report) as UpdateReport);
        return {
          deviceId: row.device_id,
          board: row.board,
          version: row.version,
          category: deviceCategory(lastSeen, row.update_state, query.notSeenBefore),
          updateState: row.update_state,
          targetVersion: row.target_version,
          lastSeen,
          reason: report?.reason ?? null,
        };
      }),
    };
  }

  async addOperator(operator: OperatorRecord): Promise<boolean> {
    const inserted = await this.db.execute(
      `INSERT INTO operators (username, password_hash, created_at) VALUES (?, ?, ?)
       ON CONFLICT (username) DO NOTHING`,
      [operator.username, operator.passwordHash, operator.createdAt.getTime()],
    );
    return inserted === 1;
  }

  async removeOperator(username: string): Promise<boolean> {
    const [, removed] = await this.db.batch([
      { sql: 'DELETE FROM sessions WHERE username = ?', params: [username] },
      { sql: 'DELETE FROM operators WHERE username = ?', params: [username] },
    ]);
    return removed === 1;
  }

  async operator(username: string): Promise<OperatorRecord | undefined> {
    const [row] = await this.db.query<{
      username: string;
      password_hash: string;
      created_at: number;
    }>('SELECT username, password_hash, created_at FROM operators WHERE username = ?', [username]);
    return (
      row && {
        username: row.username,
        passwordHash: row.password_hash,
        createdAt: new Date(row.created_at),
      }
    );
  }

  async listOperators(): Promise<Omit<OperatorRecord, 'passwordHash'>[]> {
    const rows = await this.db.query<{ username: string; created_at: number }>(
      'SELECT username, created_at FROM operators ORDER BY username',
    );
    return rows.map((row) => ({ username: row.username, createdAt: new Date(row.created_at) }));
  }

  async createSession(session: SessionRecord): Promise<void> {
    await this.db.execute(
      `INSERT INTO sessions (id_hash, username, csrf_token, created_at, last_used_at)
       VALUES (?, ?, ?, ?, ?)`,
      [
        session.idHash,
        session.username,
        session.csrfToken,
        session.createdAt.getTime(),
        session.lastUsedAt.getTime(),
      ],
    );
  }

  async session(idHash: string): Promise<SessionRecord | undefined> {
    const [row] = await this.db.query<SessionRow>(
      'SELECT id_hash, username, csrf_token, created_at, last_used_at FROM sessions WHERE id_hash = ?',
      [idHash],
    );
    return (
      row && {
        idHash: row.id_hash,
        username: row.username,
        csrfToken: row.csrf_token,
        createdAt: new Date(row.created_at),
        lastUsedAt: new Date(row.last_used_at),
      }
    );
  }

  async touchSession(idHash: string, at: Date): Promise<void> {
    await this.db.execute('UPDATE sessions SET last_used_at = ? WHERE id_hash = ?', [
      at.getTime(),
      idHash,
    ]);
  }

  async deleteSession(idHash: string): Promise<void> {
    await this.db.execute('DELETE FROM sessions WHERE id_hash = ?', [idHash]);
  }

  async deleteExpiredSessions(idleBefore: Date, createdBefore: Date): Promise<void> {
    await this.db.execute('DELETE FROM sessions WHERE last_used_at < ? OR created_at < ?', [
      idleBefore.getTime(),
      createdBefore.getTime(),
    ]);
  }

  async prune(policy: RetentionPolicy, now: Date): Promise<void> {
    const keepNewest = (table: string): string =>
      `DELETE FROM ${table} WHERE id IN (
        SELECT id FROM (
          SELECT id, ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY id DESC) AS newness
          FROM ${table}
        ) ranked WHERE newness > ?
      )`;
    await this.db.execute(keepNewest('check_ins'), [policy.checkInsPerDevice]);
    await this.db.execute(keepNewest('uplinks'), [policy.uplinksPerDevice]);
    // Buckets are read only while a roll-out is active or paused: those of ended ones (left
    // when their delete failed) go. A roll-out being made meanwhile refills its own.
    await this.db.execute(
      `DELETE FROM rollout_buckets WHERE rollout_id NOT IN (
        SELECT id FROM rollouts WHERE state IN ${COUNTED_STATES}
      )`,
    );
    await this.db.execute('DELETE FROM used_token_ids WHERE expires_at < ?', [now.getTime()]);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

function deviceSummaryOf(row: DeviceRow): DeviceSummary {
  const lastCheckIn: CheckInRecord | null =
    row.last_seen_at === null || row.update_report === null
      ? null
      : {
          at: new Date(row.last_seen_at),
          slot: row.slot ?? 'a',
          firmwareHash: row.firmware_hash ?? '',
          version: row.version ?? '',
          update: JSON.parse(row.update_report) as UpdateReport,
          desiredVersion: row.desired_version,
          ...appOf(row.app_report),
        };
  return {
    deviceId: row.device_id,
    board: row.board,
    enrolledAt: new Date(row.enrolled_at),
    lastCheckIn,
  };
}

/** The app report as a field to spread: none when the device sent none. */
function appOf(appReport: string | null): { app?: AppReport } {
  return appReport === null ? {} : { app: JSON.parse(appReport) as AppReport };
}

function rolloutOf(row: RolloutRow): Rollout {
  return {
    id: row.id,
    board: row.board,
    version: row.version,
    percent: row.percent,
    state: row.state,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    failureThresholdPercent: row.failure_threshold_percent,
    minDevicesForThreshold: row.min_devices_for_threshold,
    pausedReason: row.paused_reason,
    ...(row.accepted_failures !== null && { acceptedFailures: row.accepted_failures }),
  };
}

/** Sort keys for the versions devices reported before keys were kept (migration 4). */
async function fillVersionKeys(db: SqlDatabase): Promise<void> {
  const versions = await db.query<{ version: string }>(
    'SELECT DISTINCT version FROM devices WHERE version_key IS NULL AND version IS NOT NULL',
  );
  for (const { version } of versions) {
    await db.execute(
      'UPDATE devices SET version_key = ? WHERE version = ? AND version_key IS NULL',
      [versionSortKey(version), version],
    );
  }
}
