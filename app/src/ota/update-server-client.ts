import { randomUUID } from 'node:crypto';
import {
  DEVICE_API_PATHS,
  DEVICE_TOKEN_CLOCK_SKEW_SECONDS,
  deviceTokenClaims,
  type CheckInRequest,
  type CheckInResponse,
  type DesiredRelease,
  type UpdateReport,
} from '@edge/formats';
import { SignJWT } from 'jose';
import type { DeviceIdentity } from './device-identity.js';
import { ServerClock } from './server-clock.js';

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
    /** Tokens are signed in the server's time (a Pi 4 without NTP may think it is 1970). */
    readonly clock = new ServerClock(),
  ) {}

  async enroll(board: string): Promise<void> {
    const response = await this.#fetch(DEVICE_API_PATHS.enroll, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        fleetToken: await this.fleetToken(),
        deviceId: this.identity.deviceId,
        board,
        publicKey: this.identity.publicJwk,
      }),
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
    const signedWith = this.clock.offsetMs;
    let response = await this.#signedPostOnce(path, text);
    // Refused, and the answer showed our idea of the server's time was off: once more, in its time.
    if (response.status === 401 && Math.abs(this.clock.offsetMs - signedWith) >= SKEW_MS) {
      await response.body?.cancel();
      response = await this.#signedPostOnce(path, text);
    }
    if (!response.ok) {
      if (response.status === 401) this.#enrolled = false;
      throw new UpdateServerError(response.status, `${path}: ${await errorText(response)}`);
    }
    return response.json();
  }

  async #signedPostOnce(path: string, text: string): Promise<Response> {
    const claims = deviceTokenClaims({
      deviceId: this.identity.deviceId,
      method: 'POST',
      path,
      body: text,
      jti: randomUUID(),
      lifetimeSeconds: 120,
      now: this.clock.now(),
    });
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT' })
      .sign(this.identity.privateKey);
    return this.#fetch(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: text,
    });
  }

  /** A request to the server; its answer's Date keeps the clock in step. */
  async #fetch(path: string, init: RequestInit): Promise<Response> {
    const sentAt = this.clock.local();
    const response = await fetch(new URL(path, this.baseUrl), {
      ...init,
      signal: AbortSignal.timeout(15_000),
    });
    this.clock.observe(response.headers.get('date'), sentAt, this.clock.local());
    return response;
  }
}

/** A clock error the server would refuse (its allowed skew, in ms). */
const SKEW_MS = DEVICE_TOKEN_CLOCK_SKEW_SECONDS * 1000;

async function errorText(response: Response): Promise<string> {
  const text = await response.text().catch(() => '');
  return `HTTP ${response.status} ${text.slice(0, 300)}`;
}
