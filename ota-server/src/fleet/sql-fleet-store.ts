import type { AppReport, UpdateReport } from '@edge/formats';
import { MIGRATIONS } from './schema.js';
import type { SqlDatabase, SqlValue } from './sql-database.js';
import type {
  CheckInRecord,
  DeviceDetail,
  DeviceKeyRecord,
  DeviceQuery,
  DeviceSummary,
  EnrollOutcome,
  FleetStore,
  RetentionPolicy,
  Rollout,
  RolloutState,
  UplinkRecord,
} from './store.js';

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
}

const DEVICE_COLUMNS =
  'device_id, board, enrolled_at, last_seen_at, slot, firmware_hash, version, update_report, desired_version, app_report';
const ROLLOUT_COLUMNS = 'id, board, version, percent, state, created_at, updated_at';

/** The fleet store on any SqlDatabase: the same statements for SQLite and PostgreSQL. */
export class SqlFleetStore implements FleetStore {
  readonly kind: FleetStore['kind'];

  private constructor(private readonly db: SqlDatabase) {
    this.kind = db.dialect;
  }

  /** Opens the store on a database, migrating its schema first. */
  static async open(db: SqlDatabase): Promise<SqlFleetStore> {
    try {
      await db.migrate(MIGRATIONS);
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
      update_state = ?, update_report = ?, desired_version = ?, app_report = ? WHERE device_id = ?`;
    if (this.db.dialect === 'postgres') {
      // One statement is one transaction and one round trip, where BEGIN…COMMIT takes four.
      await this.db.execute(`WITH history AS (${insert}) ${update}`, [
        ...state,
        deviceId,
        ...state,
        deviceId,
      ]);
      return;
    }
    await this.db.batch([
      { sql: insert, params: [...state, deviceId] },
      { sql: update, params: [...state, deviceId] },
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
    await this.db.execute(
      `INSERT INTO rollouts (${ROLLOUT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      [
        rollout.id,
        rollout.board,
        rollout.version,
        rollout.percent,
        rollout.state,
        rollout.createdAt.getTime(),
        rollout.updatedAt.getTime(),
      ],
    );
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
    next: Pick<Rollout, 'state' | 'percent' | 'updatedAt'>,
  ): Promise<boolean> {
    const changed = await this.db.execute(
      `UPDATE rollouts SET state = ?, percent = ?, updated_at = ?
       WHERE id = ? AND state = ? AND percent = ?`,
      [next.state, next.percent, next.updatedAt.getTime(), id, expected.state, expected.percent],
    );
    return changed === 1;
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
  };
}
