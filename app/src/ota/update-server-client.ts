import { createHash, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { DeviceIdentity } from './device-identity.js';

export type UpdateStep =
  'idle' | 'downloading' | 'applying' | 'verifying' | 'rebooting' | 'committed' | 'failed';

export interface UpdateStatus {
  state: UpdateStep;
  targetVersion?: string;
  progress?: number;
  bytesDone?: number;
  bytesTotal?: number;
  reason?: string;
}

export interface CheckInReport {
  board: string;
  slot: 'a' | 'b';
  firmwareHash: string;
  version: string;
  update: UpdateStatus;
}

export interface DesiredRelease {
  version: string;
  board: string;
  imageTarget: string;
}

export interface CheckInAnswer {
  desired: DesiredRelease | null;
  checkInSeconds: number;
}

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
    const response = await fetch(new URL('/api/v1/devices/enroll', this.baseUrl), {
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
    return (await this.signedPost('/api/v1/device/check-in', report)) as CheckInAnswer;
  }

  async signedPost(path: string, body: unknown): Promise<unknown> {
    const text = JSON.stringify(body);
    const bodySha256 = createHash('sha256').update(text).digest('base64url');
    const token = await new SignJWT({ htm: 'POST', htu: path, bodySha256 })
      .setProtectedHeader({ alg: 'EdDSA' })
      .setSubject(this.identity.deviceId)
      .setIssuedAt()
      .setExpirationTime('2m')
      .setJti(randomUUID())
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
