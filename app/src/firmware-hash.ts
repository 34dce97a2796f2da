import { readFile } from 'node:fs/promises';
import { hashSlotImage } from '@edge/formats';
import type { SlotHashRecords } from './slot-hash-records.js';

export type FirmwareHashState =
  | { state: 'computing'; slotPath: string | undefined; bytesDone: number; bytesTotal: number }
  | {
      state: 'known';
      slotPath: string;
      hash: string;
      length: number;
      /** From the slot's record (written when the agent verified it), not read at this boot. */
      recorded?: true;
    }
  | { state: 'failed'; slotPath: string | undefined; reason: string };

export interface FirmwareHashSource {
  readonly current: FirmwareHashState;
}

/**
 * SHA-256 of the running root slot, computed once in the background and cached: the slot is
 * read-only while it runs, so its hash cannot change. With `records`, a slot measured before
 * (or verified by the agent after writing it) is not read again at every boot.
 */
export class FirmwareHash implements FirmwareHashSource {
  #state: FirmwareHashState = {
    state: 'computing',
    slotPath: undefined,
    bytesDone: 0,
    bytesTotal: 0,
  };
  readonly done: Promise<FirmwareHashState>;

  /**
   * `after`: hashing reads the whole slot and keeps the CPU busy, so on a small device it
   * waits until the server listens (a single-core device starts about twice as fast).
   */
  constructor(
    slotPathSetting: string,
    options: { cmdlinePath?: string; after?: Promise<unknown>; records?: SlotHashRecords } = {},
  ) {
    const { cmdlinePath = '/proc/cmdline', after = Promise.resolve(), records } = options;
    this.done = after.then(() => this.#compute(slotPathSetting, cmdlinePath, records));
  }

  get current(): FirmwareHashState {
    return this.#state;
  }

  async #compute(
    setting: string,
    cmdlinePath: string,
    records: SlotHashRecords | undefined,
  ): Promise<FirmwareHashState> {
    let slotPath: string | undefined;
    try {
      slotPath = setting === 'auto' ? await rootDeviceFromCmdline(cmdlinePath) : setting;
      const path = slotPath;
      this.#state = { state: 'computing', slotPath: path, bytesDone: 0, bytesTotal: 0 };
      const recorded = await records?.lookup(path).catch(() => undefined);
      if (recorded) {
        const { sha256: hash, length } = recorded;
        this.#state = { state: 'known', slotPath: path, hash, length, recorded: true };
        return this.#state;
      }
      const { sha256, length } = await hashSlotImage(path, ({ bytesDone, bytesTotal }) => {
        this.#state = { state: 'computing', slotPath: path, bytesDone, bytesTotal };
      });
      this.#state = { state: 'known', slotPath: path, hash: sha256, length };
      // Best effort: without a record the next boot measures again.
      await records?.remember(path, { sha256, length }).catch(() => undefined);
    } catch (error) {
      this.#state = { state: 'failed', slotPath, reason: reasonOf(error) };
    }
    return this.#state;
  }
}

/**
 * The root= device the kernel booted with, which is the running slot: a /dev path, or
 * PARTUUID= resolved through /dev/disk/by-partuuid (made by udev, or the initramfs).
 */
export async function rootDeviceFromCmdline(cmdlinePath: string): Promise<string> {
  const cmdline = await readFile(cmdlinePath, 'utf8').catch(() => '');
  const root = /(?:^|\s)root=(\S+)/.exec(cmdline)?.[1];
  if (!root) {
    throw new Error(`no root= in ${cmdlinePath}: set firmware.slotPath (EDGE_FIRMWARE_SLOT_PATH)`);
  }
  const partuuid = /^PARTUUID=([0-9a-fA-F-]+)$/.exec(root)?.[1];
  if (partuuid) return `/dev/disk/by-partuuid/${partuuid.toLowerCase()}`;
  if (!root.startsWith('/dev/')) {
    throw new Error(
      `root=${root} in ${cmdlinePath} is neither a /dev path nor PARTUUID=: set firmware.slotPath`,
    );
  }
  return root;
}

function reasonOf(error: unknown): string {
  const { code, path, message } = error as NodeJS.ErrnoException;
  if (code && path) return `cannot read ${path}: ${code}`;
  return message ?? String(error);
}
