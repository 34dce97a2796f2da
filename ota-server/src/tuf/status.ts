import { readFile } from 'node:fs/promises';
import { daysLeft } from './expiry.js';
import { repositoryLayout } from './layout.js';
import { isAlive } from './lock.js';
import { ROLE_NAMES } from './metadata.js';
import type { RoleName } from './metadata.js';
import { loadExpiryPolicy } from './options.js';
import { loadRepositoryState, verifyRepository } from './repository-state.js';

export interface RoleStatus {
  version: number;
  expires: string;
  daysLeft: number;
  keyIds: string[];
}

export interface RepositoryStatus {
  roles: Record<RoleName, RoleStatus>;
  targetsCount: number;
  /** Expired or soon to expire metadata, a lock left by a dead process. */
  warnings: string[];
  /** What a client would reject now (bad signature, hash or version mismatch). */
  problems: string[];
}

export interface StatusOptions {
  now?: Date;
  /** Warn when root or targets expire within this many days (default 14). */
  warnWithinDays?: number;
}

/** Online roles are re-signed by the refresh job: a warning means it has not been running. */
const ONLINE_WARN_SHARE = 1 / 4;

export async function repositoryStatus(
  dir: string,
  options: StatusOptions = {},
): Promise<RepositoryStatus> {
  const now = options.now ?? new Date();
  const warnWithinDays = options.warnWithinDays ?? 14;
  const state = await loadRepositoryState(dir);
  const policy = await loadExpiryPolicy(state.layout);
  const root = state.root.envelope.signed;
  const warnings: string[] = [];
  const roles = {} as Record<RoleName, RoleStatus>;
  for (const role of ROLE_NAMES) {
    const signed = state[role].envelope.signed;
    const left = daysLeft(signed.expires, now);
    roles[role] = {
      version: signed.version,
      expires: signed.expires,
      daysLeft: left,
      keyIds: root.roles[role].keyids,
    };
    const within =
      role === 'root' || role === 'targets' ? warnWithinDays : policy[role] * ONLINE_WARN_SHARE;
    if (left <= 0) {
      warnings.push(`${role} version ${signed.version} expired at ${signed.expires}`);
    } else if (left < within) {
      const fix = role === 'root' ? 'sign a new root with the offline root key' : 'run the refresh';
      warnings.push(
        `${role} version ${signed.version} expires at ${signed.expires} (in ${left.toFixed(1)} days): ${fix}`,
      );
    }
  }
  const lockHolder = await readFile(repositoryLayout(dir).lockFile, 'utf8').catch(() => undefined);
  if (lockHolder !== undefined && !isAlive(Number.parseInt(lockHolder, 10))) {
    warnings.push(
      `lock left by process ${lockHolder.trim()}, not running: the next operation takes it over`,
    );
  }
  return {
    roles,
    targetsCount: Object.keys(state.targets.envelope.signed.targets).length,
    warnings,
    problems: await verifyRepository(state),
  };
}
