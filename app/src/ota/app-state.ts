import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic, type AppReport } from '@edge/formats';

/** What the app installer knows across restarts: the releases on /data and how they went. */
export interface AppInstallState {
  /** The release `current` points to, once activated; null before the first. */
  installed: string | null;
  /** The release kept for rollback; null when none. */
  previous: string | null;
  /** Releases refused (bad bytes, modules the sandbox refused): not tried until a newer one. */
  failedVersions: string[];
  /** Saved before `current` switches: a start that finds it switches back (power cut, crash). */
  activating?: { version: string; previous: string | null };
  /** Activations of this release cut short; a second one marks it failed. */
  interrupted?: { version: string; count: number };
  /** Bytes the last install fetched (index and files). */
  lastDownload?: { version: string; bytes: number };
  report: AppReport;
}

const INITIAL: AppInstallState = {
  installed: null,
  previous: null,
  failedVersions: [],
  report: { version: null, state: 'idle' },
};

/** The installer's state in one JSON file on /data, replaced atomically on every change. */
export class AppStateFile {
  readonly path: string;
  #saving: Promise<void> = Promise.resolve();

  constructor(dataDir: string) {
    this.path = join(dataDir, 'app-state.json');
  }

  async load(): Promise<AppInstallState> {
    try {
      const state = JSON.parse(await readFile(this.path, 'utf8')) as Partial<AppInstallState>;
      return {
        ...structuredClone(INITIAL),
        ...state,
        failedVersions: state.failedVersions ?? [],
      };
    } catch {
      return structuredClone(INITIAL);
    }
  }

  /** Saves in call order: a slow older save never lands after a newer one. */
  save(state: AppInstallState): Promise<void> {
    const text = `${JSON.stringify(state, null, 1)}\n`;
    this.#saving = this.#saving.catch(() => undefined).then(() => writeFileAtomic(this.path, text));
    return this.#saving;
  }
}
