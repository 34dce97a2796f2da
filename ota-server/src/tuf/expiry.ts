import type { RoleName } from './metadata.js';

/** How long each role's metadata stays valid, in days (fractions allowed). */
export type ExpiryPolicy = Record<RoleName, number>;

/** Root is signed offline and rarely; timestamp is re-signed by a daily job. */
export const DEFAULT_EXPIRY_DAYS: ExpiryPolicy = {
  root: 365,
  targets: 90,
  snapshot: 7,
  timestamp: 1,
};

const DAY_MS = 24 * 60 * 60 * 1000;
const EXPIRES_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

export function expiryPolicy(overrides: Partial<ExpiryPolicy> = {}): ExpiryPolicy {
  const policy = { ...DEFAULT_EXPIRY_DAYS, ...overrides };
  for (const [role, days] of Object.entries(policy)) {
    if (!(days > 0)) throw new RangeError(`expiry for ${role} must be a positive number of days`);
  }
  return policy;
}

/** `YYYY-MM-DDTHH:MM:SSZ` as the TUF specification writes it: UTC, no fraction of a second. */
export function formatExpires(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function expiresAfter(now: Date, days: number): string {
  return formatExpires(new Date(now.getTime() + days * DAY_MS));
}

export function isExpiresFormat(value: string): boolean {
  return EXPIRES_PATTERN.test(value) && !Number.isNaN(Date.parse(value));
}

/** Days from `now` until `expires` (negative once expired). */
export function daysLeft(expires: string, now: Date): number {
  return (Date.parse(expires) - now.getTime()) / DAY_MS;
}
