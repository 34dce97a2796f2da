/** Why a repository operation refused or failed; the message names the file and the fix. */
export type TufErrorCode =
  | 'KEY_MISSING'
  | 'KEY_UNSAFE_MODE'
  | 'KEY_INVALID'
  | 'KEY_NOT_IN_ROOT'
  | 'REPOSITORY_EXISTS'
  | 'REPOSITORY_MISSING'
  | 'REPOSITORY_INVALID'
  | 'REPOSITORY_LOCKED'
  | 'TARGET_INVALID'
  | 'TARGET_CONFLICT';

export class TufRepositoryError extends Error {
  constructor(
    readonly code: TufErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TufRepositoryError';
  }
}
