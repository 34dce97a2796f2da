import { access, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { syncDirectory } from '@edge/formats';
import { TufRepositoryError } from './errors.js';
import { expiresAfter } from './expiry.js';
import { generateEd25519KeyPair, loadPrivateKey, savePrivateKey } from './keys.js';
import type { RoleKeyPair } from './keys.js';
import { defaultKeyPath, repositoryLayout } from './layout.js';
import type { RoleName, RootSigned } from './metadata.js';
import { loadExpiryPolicy } from './options.js';
import type { OperationOptions } from './options.js';
import { publishMetadata, publishRoot } from './publish.js';
import type { PublishContext } from './publish.js';
import { loadRepositoryState } from './repository-state.js';
import { withRepositoryLock } from './repository-lock.js';
import { loadRoleKey } from './role-keys.js';

export interface RotateKeysOptions extends OperationOptions {
  /** The current (offline) root key: every rotation is a new root version. */
  rootKeyPath: string;
  /** Rotating root: where the new root key is written (must not exist yet). */
  newRootKeyPath?: string;
}

export interface RotateKeysResult {
  role: RoleName;
  keyId: string;
  keyPath: string;
  rootVersion: number;
}

/**
 * Replaces a role's key with a fresh Ed25519 key.
 *
 * root: root N+1 lists the new root key and is signed by the old and the new one, so a
 * device that trusts root N verifies N+1 and moves on.
 * targets, snapshot, timestamp: root N+1 lists the old and the new key; the role's metadata
 * is re-signed with the new key; root N+2 drops the old key. Every step leaves metadata that
 * clients accept, so a crash in between needs no repair. The new key replaces keys/<role>.pem
 * (or the file named in keyPaths).
 */
export async function rotateKeys(
  dir: string,
  role: RoleName,
  options: RotateKeysOptions,
): Promise<RotateKeysResult> {
  const layout = repositoryLayout(dir);
  return withRepositoryLock(layout, options, async () => {
    const now = options.now ?? new Date();
    const state = await loadRepositoryState(dir);
    const policy = await loadExpiryPolicy(layout, options.expiries);
    const rootKey = await loadRoleKey(options.rootKeyPath, 'root', state.root.envelope.signed);
    const context: PublishContext = { layout, now, policy, beforeWrite: options.beforeWrite };
    const nextRoot = (previous: RootSigned, keyIds: string[], added?: RoleKeyPair): RootSigned => {
      const roles = { ...previous.roles, [role]: { keyids: keyIds, threshold: 1 } };
      const keys = { ...previous.keys };
      if (added) keys[added.keyId] = added.key;
      // Keep only keys some role still lists.
      const used = new Set(Object.values(roles).flatMap((r) => r.keyids));
      for (const id of Object.keys(keys)) if (!used.has(id)) delete keys[id];
      return {
        ...previous,
        version: previous.version + 1,
        expires: expiresAfter(now, policy.root),
        keys,
        roles,
      };
    };

    if (role === 'root') {
      if (!options.newRootKeyPath) {
        throw new TufRepositoryError(
          'KEY_MISSING',
          'rotating root needs newRootKeyPath, where the new root key goes',
        );
      }
      const newKey = generateEd25519KeyPair();
      await savePrivateKey(options.newRootKeyPath, newKey).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'EEXIST') {
          throw new TufRepositoryError(
            'KEY_INVALID',
            `${options.newRootKeyPath}: exists already; choose a new path`,
          );
        }
        throw error;
      });
      const root = nextRoot(state.root.envelope.signed, [newKey.keyId], newKey);
      await publishRoot(root, [rootKey, newKey], context);
      return {
        role,
        keyId: newKey.keyId,
        keyPath: options.newRootKeyPath,
        rootVersion: root.version,
      };
    }

    const current = state.root.envelope.signed;
    // The keys of the roles re-signed beside the rotated one, checked before anything is written.
    const otherKey = (other: 'targets' | 'snapshot' | 'timestamp'): Promise<RoleKeyPair> =>
      loadRoleKey(options.keyPaths?.[other] ?? defaultKeyPath(layout, other), other, current);
    const others = {
      snapshot: role === 'targets' ? await otherKey('snapshot') : undefined,
      timestamp: role !== 'timestamp' ? await otherKey('timestamp') : undefined,
    };
    const keyPath = options.keyPaths?.[role] ?? defaultKeyPath(layout, role);
    const pendingPath = `${keyPath}.next`;
    let newKey: RoleKeyPair;
    if (await exists(pendingPath)) {
      // A rotation interrupted after saving its key resumes with that key.
      newKey = await loadPrivateKey(pendingPath);
    } else {
      newKey = generateEd25519KeyPair();
      await savePrivateKey(pendingPath, newKey);
    }

    const transition = nextRoot(
      current,
      [...new Set([...current.roles[role].keyids, newKey.keyId])],
      newKey,
    );
    await publishRoot(transition, [rootKey], context);
    await rename(pendingPath, keyPath);
    await syncDirectory(dirname(keyPath));

    await publishMetadata(
      state,
      {
        targets: role === 'targets' ? state.targets.envelope.signed.targets : undefined,
        resignSnapshot: role !== 'timestamp',
      },
      {
        targets: role === 'targets' ? newKey : undefined,
        snapshot: role === 'snapshot' ? newKey : others.snapshot,
        timestamp: others.timestamp ?? newKey,
      },
      context,
    );
    const final = nextRoot(transition, [newKey.keyId]);
    await publishRoot(final, [rootKey], context);
    return { role, keyId: newKey.keyId, keyPath, rootVersion: final.version };
  });
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
