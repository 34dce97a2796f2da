import type { AppReport, UpdateReport, UpdateState } from '@edge/formats';

/** Fleet state (devices, check-ins, uplinks, roll-outs): one interface, SQLite or PostgreSQL. */

export type EnrollOutcome = 'created' | 'same' | 'conflict';

export interface DeviceKeyRecord {
  deviceId: string;
  board: string;
  /** The Ed25519 public key's x (base64url), as in the JWK it enrolled with. */
  publicKeyX: string;
}

export interface DeviceReport {
  slot: 'a' | 'b';
  firmwareHash: string;
  version: string;
  update: UpdateReport;
  /** The app release the device runs and installs; absent from devices older than app releases. */
  app?: AppReport;
}

export interface CheckInRecord extends DeviceReport {
  at: Date;
  /** The version the answer named, or null. */
  desiredVersion: string | null;
}

export interface DeviceSummary {
  deviceId: string;
  board: string;
  enrolledAt: Date;
  /** The last check-in, or null before the first. */
  lastCheckIn: CheckInRecord | null;
}

export interface UplinkRecord {
  at: Date;
  module: string;
  payload: unknown;
}

export interface DeviceDetail extends DeviceSummary {
  /** Newest first. */
  checkIns: CheckInRecord[];
  /** Newest first. */
  uplinks: UplinkRecord[];
}

export type RolloutState = 'active' | 'paused' | 'completed' | 'cancelled';

export interface Rollout {
  id: string;
  board: string;
  version: string;
  /** 0..100: the share of the board's devices it covers. */
  percent: number;
  state: RolloutState;
  createdAt: Date;
  updatedAt: Date;
}

export interface DeviceQuery {
  board?: string;
  state?: UpdateState;
  limit: number;
  /** Devices after this id (ids sort as strings). */
  afterDeviceId?: string;
}

export interface RetentionPolicy {
  checkInsPerDevice: number;
  uplinksPerDevice: number;
}

export interface FleetStore {
  readonly kind: 'sqlite' | 'postgres';
  enrollDevice(device: DeviceKeyRecord, at: Date): Promise<EnrollOutcome>;
  deviceKey(deviceId: string): Promise<DeviceKeyRecord | undefined>;
  /** Records a token id until it expires; false when it was seen already (a replay). */
  useTokenId(deviceId: string, jti: string, expiresAt: Date): Promise<boolean>;
  /** Appends to the device's history and makes it its last state, in one transaction. */
  recordCheckIn(deviceId: string, checkIn: CheckInRecord): Promise<void>;
  recordUplink(deviceId: string, uplink: UplinkRecord): Promise<void>;
  listDevices(query: DeviceQuery): Promise<DeviceSummary[]>;
  device(deviceId: string, historyLimit: number): Promise<DeviceDetail | undefined>;

  createRollout(rollout: Rollout): Promise<void>;
  rollout(id: string): Promise<Rollout | undefined>;
  /** Newest first; only those of one board when given. */
  listRollouts(board?: string): Promise<Rollout[]>;
  /** What decides a device's release: not cancelled, newest first, down to the newest completed. */
  rolloutsInForce(board: string): Promise<Rollout[]>;
  /**
   * Changes percent and state only if the roll-out still has the state and percent it was
   * read with (two operators at once: one wins, the other gets false).
   */
  updateRollout(
    id: string,
    expected: Pick<Rollout, 'state' | 'percent'>,
    next: Pick<Rollout, 'state' | 'percent' | 'updatedAt'>,
  ): Promise<boolean>;

  /** Drops history past the policy and token ids past their expiry. */
  prune(policy: RetentionPolicy, now: Date): Promise<void>;
  close(): Promise<void>;
}
