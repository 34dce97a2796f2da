import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import {
  DEVICE_API_PATHS,
  deviceTokenClaims,
  type CheckInRequest,
  type Ed25519PublicJwk,
} from '@edge/formats';
import { SignJWT } from 'jose';

export interface TokenOverrides {
  claims?: Record<string, unknown>;
  /** Sign with another key (a device pretending to be this one). */
  key?: KeyObject;
  /** Token signed for this body, another body sent. */
  bodySigned?: string;
  method?: string;
  path?: string;
  now?: Date;
  lifetimeSeconds?: number;
  jti?: string;
}

export interface SentRequest {
  status: number;
  body: Record<string, unknown>;
  token: string;
}

/** A simulated device: its own Ed25519 key, enrolment, and requests signed as the agent will. */
export class SimulatedDevice {
  readonly privateKey: KeyObject;
  readonly publicJwk: Ed25519PublicJwk;

  constructor(
    readonly deviceId: string,
    readonly board = 'rpi4',
  ) {
    const pair = generateKeyPairSync('ed25519');
    this.privateKey = pair.privateKey;
    this.publicJwk = pair.publicKey.export({ format: 'jwk' }) as Ed25519PublicJwk;
  }

  async enroll(
    baseUrl: string,
    fleetToken: string,
    publicKey = this.publicJwk,
  ): Promise<SentRequest> {
    const response = await fetch(`${baseUrl}${DEVICE_API_PATHS.enroll}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ fleetToken, deviceId: this.deviceId, board: this.board, publicKey }),
    });
    return {
      status: response.status,
      body: (await response.json()) as Record<string, unknown>,
      token: '',
    };
  }

  async token(
    method: string,
    path: string,
    body: string | undefined,
    overrides: TokenOverrides = {},
  ): Promise<string> {
    const claims = {
      ...deviceTokenClaims({
        deviceId: this.deviceId,
        method: overrides.method ?? method,
        path: overrides.path ?? path,
        body: overrides.bodySigned ?? body,
        jti: overrides.jti ?? randomUUID(),
        now: overrides.now,
        lifetimeSeconds: overrides.lifetimeSeconds,
      }),
      ...overrides.claims,
    };
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' })
      .sign(overrides.key ?? this.privateKey);
  }

  async post(
    baseUrl: string,
    path: string,
    payload: unknown,
    overrides: TokenOverrides = {},
    token?: string,
  ): Promise<SentRequest> {
    const body = JSON.stringify(payload);
    const signed = token ?? (await this.token('POST', path, body, overrides));
    const response = await fetch(`${baseUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${signed}` },
      body,
    });
    return {
      status: response.status,
      body: (await response.json()) as Record<string, unknown>,
      token: signed,
    };
  }

  checkInReport(
    version: string,
    update: CheckInRequest['update'] = { state: 'idle' },
  ): CheckInRequest {
    return { board: this.board, slot: 'a', firmwareHash: 'a'.repeat(64), version, update };
  }

  async checkIn(
    baseUrl: string,
    version: string,
    update?: CheckInRequest['update'],
  ): Promise<SentRequest> {
    return this.post(baseUrl, DEVICE_API_PATHS.checkIn, this.checkInReport(version, update));
  }
}
