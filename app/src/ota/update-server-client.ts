import { randomUUID } from 'node:crypto';
import {
  DEVICE_API_PATHS,
  deviceTokenClaims,
  type CheckInRequest,
  type CheckInResponse,
  type DesiredRelease,
  type UpdateReport,
} from '@edge/formats';
import { SignJWT } from 'jose';
import type { DeviceIdentity } from './device-identity.js';

/** The device API's types, as the update server defines them (formats/src/device-api.ts). */
export type UpdateStatus = UpdateReport;
export type UpdateStep = UpdateReport['state'];
export type CheckInReport = CheckInRequest;
export type CheckInAnswer = CheckInResponse;
export type { DesiredRelease };

export class UpdateServerError extends Error {
  override name = 'UpdateServerError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The device side of the update server's API: enrolment with the fleet token, then every
 * request signed by the device's own key (a short-lived EdDSA JWT bound to method, path
 * and body).
 */
export class UpdateServerClient {
  #enrolled = false;

  constructor(
    private readonly baseUrl: string,
    private readonly identity: DeviceIdentity,
    private readonly fleetToken: () => Promise<string>,
  ) {}

  async enroll(board: string): Promise<void> {
    const response = await fetch(new URL(DEVICE_API_PATHS.enroll, this.baseUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        fleetToken: await this.fleetToken(),
        deviceId: this.identity.deviceId,
        board,
        publicKey: this.identity.publicJwk,
      }),
      signal: AbortSignal.timeout(15_000),
    });
    if (response.status !== 200 && response.status !== 201) {
      throw new UpdateServerError(
        response.status,
        `enrolment refused: ${await errorText(response)}`,
      );
    }
    this.#enrolled = true;
  }

  async checkIn(report: CheckInReport): Promise<CheckInAnswer> {
    if (!this.#enrolled) await this.enroll(report.board);
    return (await this.signedPost(DEVICE_API_PATHS.checkIn, report)) as CheckInAnswer;
  }

  async signedPost(path: string, body: unknown): Promise<unknown> {
    const text = JSON.stringify(body);
    const claims = deviceTokenClaims({
      deviceId: this.identity.deviceId,
      method: 'POST',
      path,
      body: text,
      jti: randomUUID(),
      lifetimeSeconds: 120,
    });
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' })
      .sign(this.identity.privateKey);
    const response = await fetch(new URL(path, this.baseUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: text,
      signal: AbortSignal.timeout(15_000),
    });
    if (!response.ok) {
      if (response.status === 401) this.#enrolled = false;
      throw new UpdateServerError(response.status, `${path}: ${await errorText(response)}`);
    }
    return response.json();
  }
}

async function errorText(response: Response): Promise<string> {
  const text = await response.text().catch(() => '');
  return `HTTP ${response.status} ${text.slice(0, 300)}`;
}
