import { TufRepositoryError } from './errors.js';
import { loadPrivateKey } from './keys.js';
import type { RoleKeyPair } from './keys.js';
import type { RoleName, RootSigned } from './metadata.js';

/** Paths of key files that override keys/<role>.pem (and the root key, which has no default). */
export type KeyPaths = Partial<Record<RoleName, string>>;

/** Loads a role's private key and checks that root lists it for that role. */
export async function loadRoleKey(
  path: string,
  role: RoleName,
  root: RootSigned,
): Promise<RoleKeyPair> {
  const keyPair = await loadPrivateKey(path);
  const allowed = root.roles[role].keyids;
  if (!allowed.includes(keyPair.keyId)) {
    throw new TufRepositoryError(
      'KEY_NOT_IN_ROOT',
      `${path}: key ${keyPair.keyId} is not a ${role} key in root version ${root.version} ` +
        `(its ${role} keys: ${allowed.join(', ')})`,
    );
  }
  return keyPair;
}
