import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic, type SlotName } from '@edge/formats';
import type { UpdateStatus } from './update-server-client.js';
import type { UpdateRetry } from './update-retry.js';

/** An update under way: what it installs where, kept on /data so a restart picks it up. */
export interface PendingUpdate {
  version: string;
  imageTarget: string;
  imageSha256: string;
  imageLength: number;
  standbySlot: SlotName;
  /** The delta in use, unless a full image is (no delta for this slot, or the delta failed). */
  deltaTarget?: string;
}

export interface OtaState {
  status: UpdateStatus;
  pending?: PendingUpdate;
  /** Releases whose new slot did not come up: not tried again until a newer one. */
  failedVersions: string[];
  /** Releases whose delta did not apply or verify: the full image is used for them. */
  deltaRefusedVersions: string[];
  /** The last file the agent downloaded for an update: a delta or a full image. */
  lastDownload?: { target: string; bytes: number };
  /** The last release that failed before its reboot, and when it may be tried again. */
  retry?: UpdateRetry;
}

const INITIAL: OtaState = {
  status: { state: 'idle' },
  failedVersions: [],
  deltaRefusedVersions: [],
};

/** The agent's state in one JSON file, replaced atomically on every change. */
export class OtaStateFile {
  readonly path: string;

  constructor(dataDir: string) {
    this.path = join(dataDir, 'ota-state.json');
  }

  async load(): Promise<OtaState> {
    try {
      const state = JSON.parse(await readFile(this.path, 'utf8')) as OtaState;
      return {
        ...INITIAL,
        ...state,
        failedVersions: state.failedVersions ?? [],
        deltaRefusedVersions: state.deltaRefusedVersions ?? [],
      };
    } catch {
      return structuredClone(INITIAL);
    }
  }

  #saving: Promise<void> = Promise.resolve();

  /** Saves in call order: a slow older save never lands after a newer one. */
  save(state: OtaState): Promise<void> {
    const text = `${JSON.stringify(state, null, 1)}\n`;
    this.#saving = this.#saving.catch(() => undefined).then(() => writeFileAtomic(this.path, text));
    return this.#saving;
  }
}
