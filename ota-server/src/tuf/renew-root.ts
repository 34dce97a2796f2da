import { expiresAfter } from './expiry.js';
import { repositoryLayout } from './layout.js';
import { loadExpiryPolicy } from './options.js';
import type { OperationOptions } from './options.js';
import { publishRoot } from './publish.js';
import { withRepositoryLock } from './repository-lock.js';
import { loadRepositoryState } from './repository-state.js';
import { loadRoleKey } from './role-keys.js';

/** Signs root N+1 with the same keys and a new expiry (root lives a year; this needs its offline key). */
export async function renewRoot(
  dir: string,
  options: OperationOptions & { rootKeyPath: string },
): Promise<{ rootVersion: number; expires: string }> {
  const layout = repositoryLayout(dir);
  return withRepositoryLock(layout, options, async () => {
    const now = options.now ?? new Date();
    const state = await loadRepositoryState(dir);
    const policy = await loadExpiryPolicy(layout, options.expiries);
    const current = state.root.envelope.signed;
    const rootKey = await loadRoleKey(options.rootKeyPath, 'root', current);
    const root = {
      ...current,
      version: current.version + 1,
      expires: expiresAfter(now, policy.root),
    };
    await publishRoot(root, [rootKey], { layout, now, policy, beforeWrite: options.beforeWrite });
    return { rootVersion: root.version, expires: root.expires };
  });
}
