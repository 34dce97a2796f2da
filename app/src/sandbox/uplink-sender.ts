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
 * `maxQueued` wait, and at most a quarter of them from one module: past that they are dropped
 * (the guest was already told "accepted"). Modules take turns, so one that floods its uplink
 * neither crowds the others out of the queue nor holds them back behind its own.
 */
export class UplinkSender implements UplinkSink {
  onOutcome?: (module: string, outcome: UplinkOutcome, reason?: string) => void;
  /** Each module's waiting payloads; the map's order is the turn order. */
  readonly #queues = new Map<string, string[]>();
  #queued = 0;
  #connection: Promise<Connection> | undefined;
  #sending: Promise<void> | undefined;

  constructor(
    private readonly connect: () => Promise<Connection>,
    private readonly maxQueued = 64,
    private readonly maxQueuedPerModule = Math.max(1, Math.floor(maxQueued / 4)),
  ) {}

  send(module: string, payload: string): void {
    const queue = this.#queues.get(module) ?? [];
    if (this.#queued >= this.maxQueued || queue.length >= this.maxQueuedPerModule) {
      this.onOutcome?.(module, 'dropped', 'queue full');
      return;
    }
    queue.push(payload);
    this.#queues.set(module, queue);
    this.#queued++;
    this.#sending ??= this.#drain().finally(() => (this.#sending = undefined));
  }

  /** Resolves once everything queued so far has been sent or has failed. */
  async idle(): Promise<void> {
    while (this.#sending) await this.#sending;
  }

  async #drain(): Promise<void> {
    for (let next = this.#takeTurn(); next; next = this.#takeTurn()) {
      try {
        await this.#post(next.module, next.payload);
        this.onOutcome?.(next.module, 'sent');
      } catch (error) {
        this.onOutcome?.(next.module, 'failed', (error as Error).message);
      }
    }
  }

  /** The first module's oldest payload; the module goes to the back of the turn order. */
  #takeTurn(): { module: string; payload: string } | undefined {
    const first = this.#queues.entries().next();
    if (first.done) return undefined;
    const [module, queue] = first.value;
    const payload = queue.shift()!;
    this.#queued--;
    this.#queues.delete(module);
    if (queue.length) this.#queues.set(module, queue);
    return { module, payload };
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
