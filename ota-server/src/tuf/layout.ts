import { join } from 'node:path';
import type { RoleName } from './metadata.js';

/**
 * A repository is one folder:
 *   keys/       private keys, PKCS8 PEM, mode 0600 (root.pem is written by init and belongs
 *               offline: move it away and pass its path to the commands that need it)
 *   metadata/   the TUF metadata base URL: N.root.json, N.targets.json, N.snapshot.json,
 *               timestamp.json, and root.json (a copy of the newest root, for initial trust)
 *   targets/    the targets base URL: <dirs of the name>/<sha256>.<file name>
 *   repository.json  settings init saved (the expiry policy, in days per role)
 *   .lock       exists while an operation writes, holding its pid (created exclusively)
 */
export interface RepositoryLayout {
  dir: string;
  keysDir: string;
  metadataDir: string;
  targetsDir: string;
  lockFile: string;
}

export function repositoryLayout(dir: string): RepositoryLayout {
  return {
    dir,
    keysDir: join(dir, 'keys'),
    metadataDir: join(dir, 'metadata'),
    targetsDir: join(dir, 'targets'),
    lockFile: join(dir, '.lock'),
  };
}

/** The key file an online operation uses for a role unless told another path. */
export function defaultKeyPath(layout: RepositoryLayout, role: RoleName): string {
  return join(layout.keysDir, `${role}.pem`);
}

/** Consistent snapshots: every metadata file but timestamp.json is named by its version. */
export function metadataFileName(role: RoleName, version: number): string {
  return role === 'timestamp' ? 'timestamp.json' : `${version}.${role}.json`;
}

/** Where a target is stored (defined with the target names the device shares). */
export { targetFileRelativePath } from '@edge/formats';
