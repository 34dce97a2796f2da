import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { expiresAfter, expiryPolicy } from './expiry.js';
import type { ExpiryPolicy } from './expiry.js';
import { TufRepositoryError } from './errors.js';
import { generateEd25519KeyPair, savePrivateKey } from './keys.js';
import type { RoleKeyPair } from './keys.js';
import { defaultKeyPath, repositoryLayout } from './layout.js';
import { withLock } from './lock.js';
import { ROLE_NAMES, SPEC_VERSION } from './metadata.js';
import type { RoleName, RootSigned } from './metadata.js';
import { settingsFile } from './options.js';
import type { OperationOptions } from './options.js';
import { publishMetadata, publishRoot } from './publish.js';
import type { RepositoryState } from './repository-state.js';
import { loadRepositoryState } from './repository-state.js';

export interface InitResult {
  /** Written by init; move it offline and pass its path to rotateKeys. */
  rootKeyPath: string;
  keyIds: Record<RoleName, string>;
  expiryDays: ExpiryPolicy;
}

/**
 * Creates a repository in `dir` (new or empty): one fresh Ed25519 key per role in keys/,
 * root version 1, empty targets, snapshot and timestamp.
 */
export async function initRepository(
  dir: string,
  options: OperationOptions = {},
): Promise<InitResult> {
  const layout = repositoryLayout(dir);
  const now = options.now ?? new Date();
  const policy = expiryPolicy(options.expiries);
  await mkdir(dir, { recursive: true });
  return withLock(
    layout.lockFile,
    async () => {
      const present = (await readdir(dir)).filter((name) => !name.startsWith('.lock'));
      if (present.length > 0) {
        throw new TufRepositoryError(
          'REPOSITORY_EXISTS',
          `${dir}: not empty (${present.join(', ')}); init only creates a new repository`,
        );
      }
      await mkdir(layout.keysDir, { mode: 0o700 });
      await mkdir(layout.metadataDir);
      await mkdir(layout.targetsDir);
      await writeFile(settingsFile(layout), `${JSON.stringify({ expiryDays: policy }, null, 2)}\n`);
      const keys = {} as Record<RoleName, RoleKeyPair>;
      for (const role of ROLE_NAMES) {
        keys[role] = generateEd25519KeyPair();
        await savePrivateKey(defaultKeyPath(layout, role), keys[role]);
      }
      const root: RootSigned = {
        _type: 'root',
        spec_version: SPEC_VERSION,
        version: 1,
        expires: expiresAfter(now, policy.root),
        consistent_snapshot: true,
        keys: Object.fromEntries(ROLE_NAMES.map((role) => [keys[role].keyId, keys[role].key])),
        roles: {
          root: { keyids: [keys.root.keyId], threshold: 1 },
          targets: { keyids: [keys.targets.keyId], threshold: 1 },
          snapshot: { keyids: [keys.snapshot.keyId], threshold: 1 },
          timestamp: { keyids: [keys.timestamp.keyId], threshold: 1 },
        },
      };
      const context = { layout, now, policy, beforeWrite: options.beforeWrite };
      await publishRoot(root, [keys.root], context);
      // Version 0 stands for "nothing yet": publishing makes targets, snapshot and timestamp 1.
      const empty = emptyState(layout, root);
      await publishMetadata(empty, { targets: {} }, keys, context);
      await loadRepositoryState(dir);
      return {
        rootKeyPath: defaultKeyPath(layout, 'root'),
        keyIds: Object.fromEntries(ROLE_NAMES.map((role) => [role, keys[role].keyId])) as Record<
          RoleName,
          string
        >,
        expiryDays: policy,
      };
    },
    options,
  );
}

function emptyState(layout: RepositoryState['layout'], root: RootSigned): RepositoryState {
  const placeholder = { version: 0, length: 0, hashes: { sha256: '' } };
  const common = { spec_version: SPEC_VERSION, version: 0, expires: root.expires };
  const none = { file: '', bytes: Buffer.alloc(0) };
  return {
    layout,
    root: { ...none, envelope: { signatures: [], signed: root } },
    targets: {
      ...none,
      envelope: { signatures: [], signed: { ...common, _type: 'targets', targets: {} } },
    },
    snapshot: {
      ...none,
      envelope: {
        signatures: [],
        signed: { ...common, _type: 'snapshot', meta: { 'targets.json': placeholder } },
      },
    },
    timestamp: {
      ...none,
      envelope: {
        signatures: [],
        signed: { ...common, _type: 'timestamp', meta: { 'snapshot.json': placeholder } },
      },
    },
  };
}
