// The JSON of /dashboard/api/*, as /work/notes/dashboard-contract.md defines it.

export type Category = 'upToDate' | 'updating' | 'failed' | 'rolledBack' | 'notSeen';
export const CATEGORIES: readonly Category[] = [
  'upToDate',
  'updating',
  'failed',
  'rolledBack',
  'notSeen',
];

export type RolloutState = 'active' | 'paused' | 'completed' | 'cancelled';

export interface Session {
  username: string;
  csrfToken: string;
}

export interface RolloutCounts {
  targeted: number;
  updated: number;
  updating: number;
  failed: number;
  rolledBack: number;
  pending: number;
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

export interface RolloutSample {
  at: string;
  percent: number;
  targeted: number;
  updated: number;
  updating: number;
  failed: number;
  rolledBack: number;
}

export interface Overview {
  generatedAt: string;
  total: number;
  byBoard: { board: string; count: number }[];
  byVersion: { board: string; version: string; count: number }[];
  byState: Record<Category, number>;
  rollouts: RolloutView[];
}

export interface DeviceRow {
  deviceId: string;
  board: string;
  version: string | null;
  category: Category;
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

export interface AppReport {
  version: string | null;
  state: string;
  targetVersion?: string;
  reason?: string;
}

export interface CheckIn {
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

export interface DeviceDetail {
  device: DeviceRow & {
    enrolledAt: string;
    slot: string | null;
    firmwareHash: string | null;
    app: AppReport | null;
  };
  checkIns: CheckIn[];
  timeline: TimelineEntry[];
  lastFailure: { at: string; reason: string | null; targetVersion: string | null } | null;
}

export interface Release {
  version: string;
  publishedAt: string | null;
  imageTarget: string;
  imageBytes: number;
  deltas: { fromVersion: string; target: string; bytes: number }[];
}

export interface Releases {
  boards: { board: string; releases: Release[] }[];
}

export interface NewRollout {
  board: string;
  version: string;
  percent: number;
  failureThresholdPercent: number;
  minDevicesForThreshold: number;
}

export type RolloutAction = 'widen' | 'pause' | 'resume' | 'cancel';
