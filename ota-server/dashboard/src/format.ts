import type { DeviceCategory, RolloutState } from './api-types.js';

const BYTE_UNITS = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 → "1.5 KiB": binary units, as image sizes on a storage card are counted. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 1024) return `${bytes} bytes`;
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 100 ? value.toFixed(0) : value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });
const timeWithSeconds = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });
const dayAndTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'short' });

export function formatDateTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : dateTime.format(date);
}

/** A time on an axis spanning `spanMs`: seconds for minutes, the day for days. */
export function formatAxisTime(time: number, spanMs: number): string {
  const format =
    spanMs < 15 * 60_000 ? timeWithSeconds : spanMs < 20 * 3600_000 ? timeOnly : dayAndTime;
  return format.format(new Date(time));
}

/** "3 min ago", for last-seen columns; the exact time goes in a <time> element's title. */
export function formatAgo(iso: string | null, now = Date.now()): string {
  if (!iso) return 'never';
  const seconds = Math.round((now - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return 'just now';
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function formatPercent(part: number, whole: number): string {
  if (whole === 0) return '0%';
  const percent = Math.round((part / whole) * 100);
  return percent === 0 && part > 0 ? '<1%' : `${percent}%`;
}

export const CATEGORY_LABELS: Record<DeviceCategory, string> = {
  upToDate: 'Up to date',
  updating: 'Updating',
  failed: 'Failed',
  rolledBack: 'Rolled back',
  notSeen: 'Not seen for a day',
};

export const ROLLOUT_STATE_LABELS: Record<RolloutState, string> = {
  active: 'Active',
  paused: 'Paused',
  completed: 'Completed',
  cancelled: 'Cancelled',
};

/** The share of attempted updates that failed or rolled back, as the auto-pause counts it. */
export function failureRate(counts: { updated: number; failed: number; rolledBack: number }): {
  bad: number;
  attempted: number;
} {
  const bad = counts.failed + counts.rolledBack;
  return { bad, attempted: counts.updated + bad };
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
