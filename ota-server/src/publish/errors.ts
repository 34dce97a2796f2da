/** Why publish refused; the message names the input and, where there is one, the fix. */
export type PublishErrorCode =
  | 'IMAGE_INVALID'
  | 'BOARD_INVALID'
  | 'VERSION_INVALID'
  | 'VERSION_NOT_NEWER'
  | 'DELTA_SOURCE_UNKNOWN'
  | 'DELTA_FAILED'
  | 'APP_FOLDER_INVALID';

export class PublishError extends Error {
  constructor(
    readonly code: PublishErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'PublishError';
  }
}
