import type { DeviceCategory, RolloutCounts, RolloutState } from '../fleet/fleet-status.js';

/**
 * The JSON of /dashboard/api/* (/work/notes/dashboard-contract.md): the routes answer with these
 * and the browser code reads them. Types only, and nothing that needs Node, so the dashboard's
 * browser program can import them.
 */

export type { DeviceCategory, RolloutCounts, RolloutState };

export interface Session {
  username: string;
  csrfToken: string;
}

export interface RolloutView {
  id: string;
  board: string;
  version: string;
  percent: number;
  state: RolloutState;
  createdAt: string;
  updatedAt: string;
  failureThresholdPercent: number;
  minDevicesForThreshold: number;
  pausedReason: string | null;
  counts: RolloutCounts;
}

/** One point of a roll-out's progress chart. */
export interface RolloutSampleJson extends Omit<RolloutCounts, 'pending'> {
  at: string;
  percent: number;
}

export interface RolloutList {
  rollouts: RolloutView[];
}

export interface RolloutDetail {
  rollout: RolloutView;
  samples: RolloutSampleJson[];
}

/** What a roll-out change answers. */
export interface RolloutChanged {
  rollout: RolloutView;
}

export interface Overview {
  generatedAt: string;
  total: number;
  byBoard: { board: string; count: number }[];
  byVersion: { board: string; version: string; count: number }[];
  byState: Record<DeviceCategory, number>;
  rollouts: RolloutView[];
}

export interface DeviceRow {
  deviceId: string;
  board: string;
  version: string | null;
  category: DeviceCategory;
  updateState: string | null;
  targetVersion: string | null;
  lastSeen: string | null;
  reason: string | null;
}

export interface DevicePage {
  total: number;
  page: number;
  pageSize: number;
  devices: DeviceRow[];
}

/** The app release a device last reported. */
export interface AppReportJson {
  version: string | null;
  state: string;
  targetVersion?: string;
  reason?: string;
}

export interface CheckInJson {
  at: string;
  version: string;
  slot: string;
  updateState: string;
  targetVersion: string | null;
  progress: number | null;
  reason: string | null;
  desiredVersion: string | null;
}

export interface TimelineEntry {
  at: string;
  state: string;
  version: string;
  targetVersion: string | null;
  reason: string | null;
}

export interface DeviceDetailJson {
  device: DeviceRow & {
    enrolledAt: string;
    slot: string | null;
    firmwareHash: string | null;
    app: AppReportJson | null;
  };
  checkIns: CheckInJson[];
  timeline: TimelineEntry[];
  lastFailure: { at: string; reason: string | null; targetVersion: string | null } | null;
}

export interface ReleaseJson {
  version: string;
  publishedAt: string | null;
  imageTarget: string;
  imageBytes: number;
  deltas: { fromVersion: string; target: string; bytes: number }[];
}

export interface Releases {
  boards: { board: string; releases: ReleaseJson[] }[];
}
