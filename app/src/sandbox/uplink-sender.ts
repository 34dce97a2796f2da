import { readFile } from 'node:fs/promises';
import { DEVICE_API_PATHS } from '@edge/formats';
import type { Config } from '../config.js';
import { loadDeviceIdentity } from '../ota/device-identity.js';
import { detectBoard } from '../ota/device-info.js';
import { UpdateServerClient, UpdateServerError } from '../ota/update-server-client.js';

export type UplinkOutcome = 'sent' | 'failed' | 'dropped';

/** Where host functions put uplinks: `send` never blocks nor fails, delivery is reported later. */
export interface UplinkSink {
  send(module: string, payload: string): void;
  onOutcome?: (module: string, outcome: UplinkOutcome, reason?: string) => void;
}

interface Connection {
  client: UpdateServerClient;
  board: string;
}

/**
 * Sends module uplinks to the update server's uplink endpoint, signed as the device (EdDSA
 * JWT, UpdateServerClient.signedPost), one at a time; enrols on first refusal. At most
 * `maxQueued` wait: past that they are dropped (the guest was already told "accepted").
 */
export class UplinkSender implements UplinkSink {
  onOutcome?: (module: string, outcome: UplinkOutcome, reason?: string) => void;
  readonly #queue: Array<{ module: string; payload: string }> = [];
  #connection: Promise<Connection> | undefined;
  #sending: Promise<void> | undefined;

  constructor(
    private readonly connect: () => Promise<Connection>,
    private readonly maxQueued = 64,
  ) {}

  send(module: string, payload: string): void {
    if (this.#queue.length >= this.maxQueued) {
      this.onOutcome?.(module, 'dropped', 'queue full');
      return;
    }
    this.#queue.push({ module, payload });
    this.#sending ??= this.#drain().finally(() => (this.#sending = undefined));
  }

  /** Resolves once everything queued so far has been sent or has failed. */
  async idle(): Promise<void> {
    while (this.#sending) await this.#sending;
  }

  async #drain(): Promise<void> {
    for (let next = this.#queue.shift(); next; next = this.#queue.shift()) {
      try {
        await this.#post(next.module, next.payload);
        this.onOutcome?.(next.module, 'sent');
      } catch (error) {
        this.onOutcome?.(next.module, 'failed', (error as Error).message);
      }
    }
  }

  async #post(module: string, payload: string): Promise<void> {
    this.#connection ??= this.connect().catch((error: unknown) => {
      this.#connection = undefined;
      throw error;
    });
    const { client, board } = await this.#connection;
    const body = { module, payload: JSON.parse(payload) as unknown };
    try {
      await client.signedPost(DEVICE_API_PATHS.uplink, body);
    } catch (error) {
      // Not enrolled yet (the update agent enrols at its first check-in): enrol, then retry once.
      if (!(error instanceof UpdateServerError) || error.status !== 401) throw error;
      await client.enroll(board);
      await client.signedPost(DEVICE_API_PATHS.uplink, body);
    }
  }
}

/** The sender for the configured update server, or undefined when there is none. */
export function createUplinkSender(ota: Config['ota']): UplinkSender | undefined {
  if (!ota.serverUrl) return undefined;
  return new UplinkSender(async () => {
    const identity = await loadDeviceIdentity(ota.dataDir, ota.deviceId || undefined);
    const fleetToken = async () => (await readFile(ota.fleetTokenFile, 'utf8')).trim();
    const board = ota.board === 'auto' ? await detectBoard() : ota.board;
    return {
      client: new UpdateServerClient(ota.serverUrl.replace(/\/$/, ''), identity, fleetToken),
      board,
    };
  });
}
