/** The update server's TUF repository: keys, layout on disk, and the operations on it. */
export { addTargets } from './add-targets.js';
export type { AddTargetsResult, NewTarget } from './add-targets.js';
export { TufRepositoryError } from './errors.js';
export type { TufErrorCode } from './errors.js';
export { DEFAULT_EXPIRY_DAYS, formatExpires } from './expiry.js';
export type { ExpiryPolicy } from './expiry.js';
export { initRepository } from './init.js';
export type { InitResult } from './init.js';
export {
  generateEd25519KeyPair,
  keyIdOf,
  loadPrivateKey,
  savePrivateKey,
  tufKeyOf,
} from './keys.js';
export type { RoleKeyPair, TufKey } from './keys.js';
export { repositoryLayout } from './layout.js';
export type { RepositoryLayout } from './layout.js';
export type { RoleName } from './metadata.js';
export type { OperationOptions } from './options.js';
export { refreshTimestamp } from './refresh.js';
export type { RefreshResult } from './refresh.js';
export { renewRoot } from './renew-root.js';
export { rotateKeys } from './rotate-keys.js';
export type { RotateKeysOptions, RotateKeysResult } from './rotate-keys.js';
export { repositoryStatus } from './status.js';
export type { RepositoryStatus, RoleStatus, StatusOptions } from './status.js';
export { deltaTargetName, imageTargetName } from './target-names.js';
