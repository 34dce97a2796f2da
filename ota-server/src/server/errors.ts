import type { DeviceAuthErrorCode } from '@edge/formats';

/** Every error the update server answers with: a stable code, an HTTP status, a message. */
export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    /** Headers the answer carries (Retry-After). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** A device token refused: always 401, with a code the device can log and act on. */
export class DeviceAuthError extends ApiError {
  constructor(
    override readonly code: DeviceAuthErrorCode,
    message: string,
  ) {
    super(401, code, message);
    this.name = 'DeviceAuthError';
  }
}

export const errors = {
  fleetTokenInvalid: () => new ApiError(401, 'FLEET_TOKEN_INVALID', 'fleet token not accepted'),
  deviceKeyConflict: (deviceId: string) =>
    new ApiError(
      409,
      'DEVICE_KEY_CONFLICT',
      `device ${deviceId} is enrolled with another key or board`,
    ),
  boardMismatch: (enrolled: string, reported: string) =>
    new ApiError(
      409,
      'BOARD_MISMATCH',
      `device enrolled as board ${enrolled} reports board ${reported}`,
    ),
  operatorTokenInvalid: () =>
    new ApiError(401, 'OPERATOR_TOKEN_INVALID', 'operator token missing or not accepted'),
  deviceNotFound: (deviceId: string) =>
    new ApiError(404, 'DEVICE_NOT_FOUND', `no device ${deviceId}`),
  rolloutNotFound: (id: string) => new ApiError(404, 'ROLLOUT_NOT_FOUND', `no roll-out ${id}`),
  releaseNotPublished: (target: string) =>
    new ApiError(422, 'RELEASE_NOT_PUBLISHED', `${target} is not a published image target`),
  rolloutState: (message: string) => new ApiError(409, 'ROLLOUT_STATE', message),
  rolloutNarrowing: (current: number, asked: number) =>
    new ApiError(
      409,
      'ROLLOUT_NARROWING',
      `a roll-out only widens: it covers ${current}%, asked for ${asked}%`,
    ),
  rolloutChanged: () =>
    new ApiError(409, 'ROLLOUT_CHANGED', 'the roll-out changed meanwhile: read it again'),
  badCursor: () => new ApiError(400, 'BAD_CURSOR', 'cursor not understood'),
  loginFailed: () => new ApiError(401, 'LOGIN_FAILED', 'wrong username or password'),
  tooManyLogins: (retryAfterSeconds: number) =>
    new ApiError(
      429,
      'TOO_MANY_LOGINS',
      `too many failed logins: try again in ${retryAfterSeconds} s`,
      { 'retry-after': String(retryAfterSeconds) },
    ),
  foreignOrigin: (origin: string) =>
    new ApiError(403, 'FOREIGN_ORIGIN', `a login from ${origin} is not accepted`),
  noSession: () => new ApiError(401, 'NO_SESSION', 'not logged in, or the session expired'),
  csrf: () => new ApiError(403, 'CSRF', 'X-CSRF-Token missing or not the one of this session'),
  fileNotFound: () => new ApiError(404, 'NOT_FOUND', 'no such file'),
};
