import { createPublicKey, type KeyObject } from 'node:crypto';
import {
  DEVICE_TOKEN_ALGORITHM,
  DEVICE_TOKEN_CLOCK_SKEW_SECONDS,
  DEVICE_TOKEN_MAX_LIFETIME_SECONDS,
  bodySha256,
} from '@edge/formats';
import { compactVerify, decodeJwt, decodeProtectedHeader, errors as joseErrors } from 'jose';
import type { DeviceKeyRecord, FleetStore } from '../fleet/store.js';
import { DeviceAuthError } from './errors.js';
import { bearerToken } from './token-set.js';

export interface SignedRequest {
  method: string;
  /** The path, without the query string. */
  path: string;
  authorization: string | undefined;
  /** The raw body, when the request has one. */
  body: Buffer | undefined;
}

/** Imported keys kept in memory: a device's key never changes once enrolled. */
const KEY_CACHE_LIMIT = 100_000;
const MAX_JTI_LENGTH = 128;

/**
 * Checks the token that signs every device request: the device's own Ed25519 key, a short
 * time window, this method, path and body, and a token id never seen before. The id is
 * recorded last, so a refused token does not use it up.
 */
export class DeviceAuthenticator {
  readonly #keys = new Map<string, { key: KeyObject; device: DeviceKeyRecord }>();

  constructor(
    private readonly store: FleetStore,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async authenticate(request: SignedRequest): Promise<DeviceKeyRecord> {
    const token = bearerToken(request.authorization);
    if (!token) throw new DeviceAuthError('AUTH_MISSING', 'no Authorization: Bearer token');
    let deviceId: unknown;
    try {
      if (decodeProtectedHeader(token).alg !== DEVICE_TOKEN_ALGORITHM) {
        throw new DeviceAuthError(
          'AUTH_MALFORMED',
          `token algorithm must be ${DEVICE_TOKEN_ALGORITHM}`,
        );
      }
      deviceId = decodeJwt(token).sub;
    } catch (error) {
      if (error instanceof DeviceAuthError) throw error;
      throw new DeviceAuthError('AUTH_MALFORMED', 'token is not a JWT');
    }
    if (typeof deviceId !== 'string' || deviceId === '') {
      throw new DeviceAuthError('AUTH_MALFORMED', 'token has no sub (device id)');
    }
    const known = await this.#keyOf(deviceId);
    if (!known)
      throw new DeviceAuthError('AUTH_UNKNOWN_DEVICE', `device ${deviceId} is not enrolled`);

    let payload: Uint8Array;
    try {
      payload = (await compactVerify(token, known.key, { algorithms: [DEVICE_TOKEN_ALGORITHM] }))
        .payload;
    } catch (error) {
      if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
        throw new DeviceAuthError(
          'AUTH_BAD_SIGNATURE',
          `signature does not match device ${deviceId}'s key`,
        );
      }
      throw new DeviceAuthError('AUTH_MALFORMED', 'token could not be verified');
    }
    let claims: Record<string, unknown>;
    try {
      claims = JSON.parse(new TextDecoder().decode(payload)) as Record<string, unknown>;
    } catch {
      throw new DeviceAuthError('AUTH_MALFORMED', 'token claims are not JSON');
    }
    const { iat, exp, jti, htm, htu } = claims;
    if (
      typeof iat !== 'number' ||
      typeof exp !== 'number' ||
      typeof jti !== 'string' ||
      jti === '' ||
      jti.length > MAX_JTI_LENGTH ||
      typeof htm !== 'string' ||
      typeof htu !== 'string'
    ) {
      throw new DeviceAuthError('AUTH_MALFORMED', 'token needs iat, exp, jti, htm and htu');
    }
    const now = this.now().getTime() / 1000;
    if (exp - iat > DEVICE_TOKEN_MAX_LIFETIME_SECONDS) {
      throw new DeviceAuthError(
        'AUTH_LIFETIME_TOO_LONG',
        `token lives ${exp - iat} s; at most ${DEVICE_TOKEN_MAX_LIFETIME_SECONDS} s`,
      );
    }
    if (iat > now + DEVICE_TOKEN_CLOCK_SKEW_SECONDS) {
      throw new DeviceAuthError(
        'AUTH_NOT_YET_VALID',
        'token issued in the future: check the clock',
      );
    }
    if (exp <= now - DEVICE_TOKEN_CLOCK_SKEW_SECONDS) {
      throw new DeviceAuthError('AUTH_EXPIRED', 'token expired');
    }
    if (htm.toUpperCase() !== request.method.toUpperCase() || htu !== request.path) {
      throw new DeviceAuthError(
        'AUTH_WRONG_REQUEST',
        `token is for ${htm} ${htu}, not ${request.method} ${request.path}`,
      );
    }
    if (request.body !== undefined || claims.bodySha256 !== undefined) {
      if (claims.bodySha256 !== bodySha256(request.body ?? '')) {
        throw new DeviceAuthError('AUTH_BODY_MISMATCH', 'bodySha256 does not match the body sent');
      }
    }
    // Kept until the token could no longer pass the expiry check above.
    const forgetAt = new Date((exp + DEVICE_TOKEN_CLOCK_SKEW_SECONDS) * 1000);
    if (!(await this.store.useTokenId(deviceId, jti, forgetAt))) {
      throw new DeviceAuthError('AUTH_REPLAYED', 'token id used before');
    }
    return known.device;
  }

  async #keyOf(deviceId: string): Promise<{ key: KeyObject; device: DeviceKeyRecord } | undefined> {
    const cached = this.#keys.get(deviceId);
    if (cached) return cached;
    const device = await this.store.deviceKey(deviceId);
    if (!device) return undefined;
    const key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: device.publicKeyX },
      format: 'jwk',
    });
    if (this.#keys.size >= KEY_CACHE_LIMIT) this.#keys.clear();
    const entry = { key, device };
    this.#keys.set(deviceId, entry);
    return entry;
  }
}
