import { createHash } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';

/**
 * The device API between the update agent and the update server: paths, request and
 * response bodies, the claims of the token that signs every request after enrolment, and
 * the error codes a device can act on. Described for people in ota-server/README.md.
 */

export const DEVICE_API_PATHS = {
  enroll: '/api/v1/devices/enroll',
  checkIn: '/api/v1/device/check-in',
  uplink: '/api/v1/device/uplink',
} as const;

/** A device token lives at most this long (exp - iat). */
export const DEVICE_TOKEN_MAX_LIFETIME_SECONDS = 300;
/** Clocks of devices and server may differ by this much. */
export const DEVICE_TOKEN_CLOCK_SKEW_SECONDS = 60;
export const DEVICE_TOKEN_ALGORITHM = 'EdDSA';

/** Names that end up in paths and target names: plain letters, digits and a few signs. */
export const DeviceId = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$' });
export const BoardName = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$' });
export const ReleaseVersion = Type.String({ minLength: 1, maxLength: 64 });
export const Sha256Hex = Type.String({ pattern: '^[0-9a-f]{64}$' });

/** The device's Ed25519 public key as a JWK (RFC 8037): x is the raw 32-byte key, base64url. */
export const Ed25519PublicJwk = Type.Object({
  kty: Type.Literal('OKP'),
  crv: Type.Literal('Ed25519'),
  x: Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' }),
});
export type Ed25519PublicJwk = Static<typeof Ed25519PublicJwk>;

export const EnrollRequest = Type.Object(
  {
    fleetToken: Type.String({ minLength: 1, maxLength: 1024 }),
    deviceId: DeviceId,
    board: BoardName,
    publicKey: Ed25519PublicJwk,
  },
  { additionalProperties: false },
);
export type EnrollRequest = Static<typeof EnrollRequest>;

/** 201 when enrolled now, 200 when the same id and key were enrolled before. */
export const EnrollResponse = Type.Object({ deviceId: DeviceId });
export type EnrollResponse = Static<typeof EnrollResponse>;

/**
 * The same names as the agent's workflow steps. `failed`: the update stopped before the reboot
 * (download, patch, verification); `rolled-back`: the new slot did not come up and the
 * bootloader went back to the old one. The agent does not try either version again.
 */
export const UPDATE_STATES = [
  'idle',
  'downloading',
  'applying',
  'verifying',
  'rebooting',
  'committed',
  'failed',
  'rolled-back',
] as const;
export type UpdateState = (typeof UPDATE_STATES)[number];
export const UpdateStateSchema = Type.Union(UPDATE_STATES.map((state) => Type.Literal(state)));

export const UpdateReport = Type.Object(
  {
    state: UpdateStateSchema,
    targetVersion: Type.Optional(ReleaseVersion),
    progress: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    bytesDone: Type.Optional(Type.Integer({ minimum: 0 })),
    bytesTotal: Type.Optional(Type.Integer({ minimum: 0 })),
    reason: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false },
);
export type UpdateReport = Static<typeof UpdateReport>;

/** The application release (WASM modules, configuration) as the agent installs it, no reboot. */
export const APP_STATES = [
  'idle',
  'downloading',
  'activating',
  'installed',
  'rolled-back',
  'failed',
] as const;
export type AppState = (typeof APP_STATES)[number];
export const AppStateSchema = Type.Union(APP_STATES.map((state) => Type.Literal(state)));

export const AppReport = Type.Object(
  {
    /** The app release `current` points to; null when none is installed. */
    version: Type.Union([Type.Null(), ReleaseVersion]),
    state: AppStateSchema,
    /** The release being installed, or the one that was rolled back or failed. */
    targetVersion: Type.Optional(ReleaseVersion),
    bytesDone: Type.Optional(Type.Integer({ minimum: 0 })),
    bytesTotal: Type.Optional(Type.Integer({ minimum: 0 })),
    reason: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false },
);
export type AppReport = Static<typeof AppReport>;

export const CheckInRequest = Type.Object(
  {
    board: BoardName,
    slot: Type.Union([Type.Literal('a'), Type.Literal('b')]),
    firmwareHash: Sha256Hex,
    version: ReleaseVersion,
    update: UpdateReport,
    /** Absent from devices older than app releases. */
    app: Type.Optional(AppReport),
  },
  { additionalProperties: false },
);
export type CheckInRequest = Static<typeof CheckInRequest>;

/** The release a device should run; imageTarget is its TUF target name. */
export const DesiredRelease = Type.Object({
  version: ReleaseVersion,
  board: BoardName,
  imageTarget: Type.String(),
});
export type DesiredRelease = Static<typeof DesiredRelease>;

/** The app release a device should run; indexTarget is its index's TUF target name. */
export const DesiredApp = Type.Object({
  version: ReleaseVersion,
  board: BoardName,
  indexTarget: Type.String(),
});
export type DesiredApp = Static<typeof DesiredApp>;

export const CheckInResponse = Type.Object({
  desired: Type.Union([Type.Null(), DesiredRelease]),
  /** The board's newest app release; absent from servers older than app releases (as null). */
  app: Type.Optional(Type.Union([Type.Null(), DesiredApp])),
  /** When to check in next. */
  checkInSeconds: Type.Integer({ minimum: 1 }),
});
export type CheckInResponse = Static<typeof CheckInResponse>;

/** What a WASM module sent with post_uplink. */
export const UplinkRequest = Type.Object(
  {
    module: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' }),
    payload: Type.Unknown(),
  },
  { additionalProperties: false },
);
export type UplinkRequest = Static<typeof UplinkRequest>;

export const UplinkResponse = Type.Object({ accepted: Type.Literal(true) });
export type UplinkResponse = Static<typeof UplinkResponse>;

/** Every error answer: the code is stable, the message is for people. */
export const ApiError = Type.Object({
  statusCode: Type.Integer(),
  code: Type.String(),
  message: Type.String(),
});
export type ApiError = Static<typeof ApiError>;

/** Why a signed request was refused (always 401). */
export const DEVICE_AUTH_ERROR_CODES = [
  'AUTH_MISSING',
  'AUTH_MALFORMED',
  'AUTH_UNKNOWN_DEVICE',
  'AUTH_BAD_SIGNATURE',
  'AUTH_EXPIRED',
  'AUTH_NOT_YET_VALID',
  'AUTH_LIFETIME_TOO_LONG',
  'AUTH_WRONG_REQUEST',
  'AUTH_BODY_MISMATCH',
  'AUTH_REPLAYED',
] as const;
export type DeviceAuthErrorCode = (typeof DEVICE_AUTH_ERROR_CODES)[number];

/** The claims of a device token; it is signed with the device's key (EdDSA, header typ JWT). */
export interface DeviceTokenClaims {
  sub: string;
  iat: number;
  exp: number;
  jti: string;
  htm: string;
  htu: string;
  bodySha256?: string;
  [claim: string]: unknown;
}

/** base64url SHA-256 of a request body exactly as sent. */
export function bodySha256(body: Uint8Array | string): string {
  return createHash('sha256').update(body).digest('base64url');
}

export interface DeviceRequest {
  deviceId: string;
  method: string;
  /** The request path, without the query string. */
  path: string;
  /** The raw body, when the request has one. */
  body?: Uint8Array | string;
  /** Unique per token; a random UUID is fine. */
  jti: string;
  now?: Date;
  lifetimeSeconds?: number;
}

/** The claims a device signs for one request. */
export function deviceTokenClaims(request: DeviceRequest): DeviceTokenClaims {
  const iat = Math.floor((request.now ?? new Date()).getTime() / 1000);
  const lifetime = Math.min(
    request.lifetimeSeconds ?? DEVICE_TOKEN_MAX_LIFETIME_SECONDS,
    DEVICE_TOKEN_MAX_LIFETIME_SECONDS,
  );
  const claims: DeviceTokenClaims = {
    sub: request.deviceId,
    iat,
    exp: iat + lifetime,
    jti: request.jti,
    htm: request.method.toUpperCase(),
    htu: request.path,
  };
  if (request.body !== undefined) claims.bodySha256 = bodySha256(request.body);
  return claims;
}
