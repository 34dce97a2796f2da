import type { AppReport, UpdateReport, UpdateState } from '@edge/formats';
import type { DeviceCategory, RolloutCounts, RolloutState } from './fleet-status.js';

export type { DeviceCategory, RolloutCounts, RolloutState } from './fleet-status.js';

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

export interface Rollout {
  id: string;
  board: string;
  version: string;
  /** 0..100: the share of the board's devices it covers. */
  percent: number;
  state: RolloutState;
  createdAt: Date;
  updatedAt: Date;
  /** The failure rate (failed + rolled back of those attempted) that pauses it by itself. */
  failureThresholdPercent: number;
  /** Attempts needed before the failure rate counts. */
  minDevicesForThreshold: number;
  /** Why it paused by itself; null when an operator paused it or it is not paused. */
  pausedReason: string | null;
  /**
   * Failures (failed + rolled back) when an operator last resumed it: the automatic pause
   * waits for more than these. Absent until a resume.
   */
  acceptedFailures?: number;
}

/** Defaults of the automatic pause for roll-outs made without thresholds (operator API, CLI). */
export const ROLLOUT_GUARD_DEFAULTS = { failureThresholdPercent: 10, minDevicesForThreshold: 10 };

export interface RolloutSample extends Omit<RolloutCounts, 'pending'> {
  at: Date;
  percent: number;
}

export const DEVICE_CATEGORIES: readonly DeviceCategory[] = [
  'upToDate',
  'updating',
  'failed',
  'rolledBack',
  'notSeen',
];

/** Update states of a device between download and reboot. */
export const UPDATING_STATES: readonly UpdateState[] = [
  'downloading',
  'applying',
  'verifying',
  'rebooting',
];

/** One (board, version, category) group of the fleet; version null before the first check-in. */
export interface FleetGroupCount {
  board: string;
  version: string | null;
  category: DeviceCategory;
  count: number;
}

export type DeviceSortKey = 'deviceId' | 'board' | 'version' | 'lastSeen' | 'state';

export interface DevicePageQuery {
  /** A substring of the device id, any case. */
  search?: string;
  board?: string;
  version?: string;
  category?: DeviceCategory;
  sort: DeviceSortKey;
  order: 'asc' | 'desc';
  offset: number;
  limit: number;
  /** Devices last seen before this are `notSeen`. */
  notSeenBefore: Date;
}

/** A device as a table row shows it: its last state, without history. */
export interface DeviceListRow {
  deviceId: string;
  board: string;
  version: string | null;
  category: DeviceCategory;
  updateState: UpdateState | null;
  targetVersion: string | null;
  lastSeen: Date | null;
  reason: string | null;
}

export interface OperatorRecord {
  username: string;
  /** `scrypt$N$r$p$salt$hash` (password-hash.ts). */
  passwordHash: string;
  createdAt: Date;
}

export interface SessionRecord {
  /** SHA-256 (hex) of the cookie's token: the token itself is never stored. */
  idHash: string;
  username: string;
  csrfToken: string;
  createdAt: Date;
  lastUsedAt: Date;
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
    next: Pick<Rollout, 'state' | 'percent' | 'updatedAt'> &
      Partial<Pick<Rollout, 'pausedReason' | 'acceptedFailures'>>,
  ): Promise<boolean>;
  /** Changes the automatic pause's settings; false when there is no such roll-out. */
  updateRolloutGuard(
    id: string,
    next: Partial<Pick<Rollout, 'failureThresholdPercent' | 'minDevicesForThreshold'>>,
    updatedAt: Date,
  ): Promise<boolean>;
  /**
   * The roll-out's devices by how they stand (rolloutBucket decides who is in it): kept up to
   * date for an active or paused one, counted now for a completed one, as they were when it
   * ended for a cancelled one; all zero for an unknown id.
   */
  rolloutCounts(rollout: Pick<Rollout, 'id'>): Promise<RolloutCounts>;
  recordRolloutSample(rolloutId: string, sample: RolloutSample): Promise<void>;
  /** Oldest first, the newest `limit`. */
  rolloutSamples(rolloutId: string, limit: number): Promise<RolloutSample[]>;

  /** The fleet in (board, version, category) groups: one grouped query. */
  fleetGroups(notSeenBefore: Date): Promise<FleetGroupCount[]>;
  /** One page of devices and how many match in all. */
  devicePage(query: DevicePageQuery): Promise<{ total: number; devices: DeviceListRow[] }>;

  /** False when the username is taken. */
  addOperator(operator: OperatorRecord): Promise<boolean>;
  /** False when there was none; its sessions go with it. */
  removeOperator(username: string): Promise<boolean>;
  operator(username: string): Promise<OperatorRecord | undefined>;
  listOperators(): Promise<Omit<OperatorRecord, 'passwordHash'>[]>;
  createSession(session: SessionRecord): Promise<void>;
  session(idHash: string): Promise<SessionRecord | undefined>;
  touchSession(idHash: string, at: Date): Promise<void>;
  deleteSession(idHash: string): Promise<void>;
  /** Drops sessions idle since `idleBefore` or created before `createdBefore`. */
  deleteExpiredSessions(idleBefore: Date, createdBefore: Date): Promise<void>;

  /** Drops history past the policy and token ids past their expiry. */
  prune(policy: RetentionPolicy, now: Date): Promise<void>;
  close(): Promise<void>;
}
