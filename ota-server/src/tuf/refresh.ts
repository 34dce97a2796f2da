import { daysLeft } from './expiry.js';
import { defaultKeyPath, repositoryLayout } from './layout.js';
import { loadExpiryPolicy } from './options.js';
import type { OperationOptions } from './options.js';
import { publishMetadata } from './publish.js';
import type { PublishedVersions } from './publish.js';
import { loadRepositoryState } from './repository-state.js';
import { withRepositoryLock } from './repository-lock.js';
import { loadRoleKey } from './role-keys.js';

export interface RefreshResult {
  versions: PublishedVersions;
  /** Roles signed anew: always timestamp; snapshot and targets when near expiry. */
  resigned: ('targets' | 'snapshot' | 'timestamp')[];
}

/** A role is re-signed once less than this share of its lifetime remains. */
const RESIGN_WHEN_LEFT = 1 / 3;

/**
 * Signs a new timestamp (run it daily: a timestamp lives one day by default), and a new
 * snapshot or targets version when less than a third of its lifetime remains. Needs only
 * the keys of the roles it re-signs.
 */
export async function refreshTimestamp(
  dir: string,
  options: OperationOptions = {},
): Promise<RefreshResult> {
  const layout = repositoryLayout(dir);
  return withRepositoryLock(layout, options, async () => {
    const now = options.now ?? new Date();
    const state = await loadRepositoryState(dir);
    const policy = await loadExpiryPolicy(layout, options.expiries);
    const root = state.root.envelope.signed;
    const nearExpiry = (role: 'targets' | 'snapshot'): boolean =>
      daysLeft(state[role].envelope.signed.expires, now) < policy[role] * RESIGN_WHEN_LEFT;
    const resignTargets = nearExpiry('targets');
    const resignSnapshot = resignTargets || nearExpiry('snapshot');
    const keyPath = (role: 'targets' | 'snapshot' | 'timestamp'): string =>
      options.keyPaths?.[role] ?? defaultKeyPath(layout, role);
    const keys = {
      timestamp: await loadRoleKey(keyPath('timestamp'), 'timestamp', root),
      snapshot: resignSnapshot
        ? await loadRoleKey(keyPath('snapshot'), 'snapshot', root)
        : undefined,
      targets: resignTargets ? await loadRoleKey(keyPath('targets'), 'targets', root) : undefined,
    };
    const versions = await publishMetadata(
      state,
      {
        targets: resignTargets ? state.targets.envelope.signed.targets : undefined,
        resignSnapshot,
      },
      keys,
      { layout, now, policy, beforeWrite: options.beforeWrite },
    );
    const resigned: RefreshResult['resigned'] = [];
    if (resignTargets) resigned.push('targets');
    if (resignSnapshot) resigned.push('snapshot');
    resigned.push('timestamp');
    return { versions, resigned };
  });
}
