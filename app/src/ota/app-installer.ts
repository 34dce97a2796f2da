import {
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  AppIndexError,
  appFileTargetName,
  appIndexTargetName,
  parseAppIndex,
  syncDirectory,
  type AppIndex,
  type AppReport,
  type DesiredApp,
} from '@edge/formats';
import type { AppInstallState, AppStateFile } from './app-state.js';
import { DownloadError, downloadResumable } from './resumable-download.js';
import type { TokenBucket } from './token-bucket.js';
import type { SignedTarget, TufClient } from './tuf-client.js';

/** What activation reports: modules the sandbox refused (ModuleRegistry's ReloadReport fits). */
export interface AppActivation {
  refused: Array<{ name: string; reason: string }>;
}

export interface AppInstallerDeps {
  tuf: Pick<TufClient, 'refresh' | 'target'>;
  /** `<dataDir>/apps`: a folder per release, and `current`, a symlink to the one that runs. */
  appsDir: string;
  stateFile: AppStateFile;
  board: string;
  /** Loads what `current` holds now (the sandbox's reloadFromDirectory). */
  activate: () => Promise<AppActivation>;
  bucket?: TokenBucket;
  log: {
    info(object: object, message: string): void;
    warn(object: object, message: string): void;
    error(object: object, message: string): void;
  };
}

/** The release's bytes or metadata are wrong: it is not tried again until a newer one. */
export class AppRefused extends Error {
  override name = 'AppRefused';
}

export const CURRENT_LINK = 'current';
const PARTIAL_SUFFIX = '.partial';
const NEW_LINK = `${CURRENT_LINK}.new`;
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/**
 * Installs app releases (WASM modules and their configuration) without a reboot: every file
 * fetched through TUF and checked against its signed length and SHA-256 into
 * `<version>.partial/`, synced and renamed to `<version>/`, then `current` switched by renaming
 * a new symlink over it. Activation that refuses a module switches back. The release before
 * is kept for that; older ones are deleted.
 */
export class AppInstaller {
  #state: AppInstallState = {
    installed: null,
    previous: null,
    failedVersions: [],
    report: { version: null, state: 'idle' },
  };

  /** Tells the update server each new status during an install (best effort). */
  #onReport: (() => Promise<unknown>) | undefined;

  constructor(private readonly deps: AppInstallerDeps) {}

  get report(): AppReport {
    return this.#state.report;
  }

  get state(): Readonly<AppInstallState> {
    return this.#state;
  }

  /**
   * Loads the state and settles what a stop left: half-downloaded folders go, and a switch
   * whose activation never finished is undone (the second time for one release, it fails).
   */
  async load(): Promise<void> {
    this.#state = await this.deps.stateFile.load();
    const { appsDir } = this.deps;
    await mkdir(appsDir, { recursive: true });
    for (const entry of await readdir(appsDir)) {
      if (entry.endsWith(PARTIAL_SUFFIX) || entry === NEW_LINK) {
        await rm(join(appsDir, entry), { recursive: true, force: true });
      }
    }
    await syncDirectory(appsDir);
    const activating = this.#state.activating;
    if (activating) {
      const count =
        (this.#state.interrupted?.version === activating.version
          ? this.#state.interrupted.count
          : 0) + 1;
      const reason = `the edge server stopped while activating app ${activating.version}`;
      this.deps.log.warn({ version: activating.version, count }, `${reason}: switching back`);
      await this.#switchCurrent(activating.previous);
      this.#state.activating = undefined;
      this.#state.interrupted = { version: activating.version, count };
      if (count >= 2) {
        this.#state.failedVersions = addOnce(this.#state.failedVersions, activating.version);
      }
      await this.#activateQuietly();
      this.#state.report = {
        version: activating.previous,
        state: count >= 2 ? 'failed' : 'rolled-back',
        targetVersion: activating.version,
        reason,
      };
    }
    // The link is what runs: it wins over a state file that missed the last step.
    const running = await this.#currentTarget();
    this.#state.installed = running;
    this.#state.report = { ...this.#state.report, version: running };
    await this.deps.stateFile.save(this.#state);
  }

  /** Whether `desired` is a release to install now. */
  wants(desired: DesiredApp): boolean {
    return (
      desired.board === this.deps.board &&
      desired.version !== this.#state.installed &&
      !this.#state.failedVersions.includes(desired.version)
    );
  }

  /**
   * Installs and activates a release, calling onReport at each step. Never throws for the
   * release's own faults: the outcome is in `report`. Bad bytes or
   * refused modules mark the release failed; a cut connection or a full disk is tried again
   * at the next check-in.
   */
  async install(desired: DesiredApp, onReport?: () => Promise<unknown>): Promise<AppReport> {
    this.#onReport = onReport;
    const { version } = desired;
    const partial = join(this.deps.appsDir, `${version}${PARTIAL_SUFFIX}`);
    try {
      checkVersionName(version);
      await this.#setReport({ state: 'downloading', targetVersion: version, bytesDone: 0 });
      const fetched = await this.#download(desired, partial);
      const folder = join(this.deps.appsDir, version);
      // A folder left by an earlier try (switched back, or cut before the switch) is not trusted.
      await rm(folder, { recursive: true, force: true });
      await rename(partial, folder);
      await syncDirectory(this.deps.appsDir);
      this.#state.lastDownload = { version, bytes: fetched };
    } catch (error) {
      await rm(partial, { recursive: true, force: true }).catch(() => undefined);
      const refused = isBadContent(error);
      if (refused) this.#state.failedVersions = addOnce(this.#state.failedVersions, version);
      this.deps.log.error({ err: error, version, refused }, 'app release not installed');
      return this.#setReport({
        state: 'failed',
        targetVersion: version,
        reason: (error as Error).message.slice(0, 1024),
      });
    }
    return this.#activate(version);
  }

  /** Switches `current` to the new release and activates it; switches back if that fails. */
  async #activate(version: string): Promise<AppReport> {
    const previous = this.#state.installed;
    this.#state.activating = { version, previous };
    await this.deps.stateFile.save(this.#state);
    await this.#switchCurrent(version);
    await this.#setReport({ state: 'activating', targetVersion: version });
    let reason: string | undefined;
    try {
      const outcome = await this.deps.activate();
      if (outcome.refused.length > 0) {
        reason = `modules refused: ${outcome.refused.map((m) => `${m.name} (${m.reason})`).join('; ')}`;
      }
    } catch (error) {
      reason = `activation failed: ${(error as Error).message}`;
    }
    this.#state.activating = undefined;
    if (reason === undefined) {
      this.#state.installed = version;
      this.#state.previous = previous;
      await this.#prune();
      this.deps.log.info({ version, previous }, 'app release installed');
      return this.#setReport({ state: 'installed', targetVersion: version });
    }
    this.deps.log.error({ version, previous, reason }, 'app release refused: switching back');
    await this.#switchCurrent(previous);
    await this.#activateQuietly();
    this.#state.failedVersions = addOnce(this.#state.failedVersions, version);
    await rm(join(this.deps.appsDir, version), { recursive: true, force: true });
    return this.#setReport({
      state: 'rolled-back',
      targetVersion: version,
      reason: reason.slice(0, 1024),
    });
  }

  /** The index, then every file it lists, each checked against its own signed target. */
  async #download(desired: DesiredApp, partial: string): Promise<number> {
    const { board, version } = desired;
    await rm(partial, { recursive: true, force: true });
    await mkdir(partial, { recursive: true });
    await this.deps.tuf.refresh();
    const indexName = appIndexTargetName(board, version);
    if (desired.indexTarget !== indexName) {
      throw new AppRefused(`the server named ${desired.indexTarget} as the index of ${indexName}`);
    }
    const indexTarget = await this.#signedTarget(indexName, 'app', board, version);
    const indexPath = join(partial, 'app.json');
    let fetched = 0;
    await this.#fetch(indexTarget, indexPath, (bytes) => (fetched += bytes));
    const index = parseAppIndex(await readFile(indexPath));
    if (index.board !== board || index.version !== version) {
      throw new AppRefused(`${indexName} describes ${index.board} ${index.version}`);
    }
    const files = await this.#signedFiles(index);
    const bytesTotal = files.reduce((sum, file) => sum + file.target.length, 0);
    let bytesDone = 0;
    for (const file of files) {
      const destination = join(partial, file.path);
      await mkdir(dirname(destination), { recursive: true });
      await this.#fetch(file.target, destination, (bytes) => (fetched += bytes));
      bytesDone += file.target.length;
      this.#state.report = { ...this.#state.report, bytesDone, bytesTotal };
    }
    // downloadResumable syncs each file's data; the folders' entries are synced here, deepest first.
    const folders = new Set(files.map((file) => dirname(join(partial, file.path))));
    for (const folder of [...folders].sort((a, b) => b.length - a.length)) {
      await syncFolderChain(folder, partial);
    }
    await syncDirectory(partial);
    return fetched;
  }

  /** Each indexed file's signed target, which must agree with the index on length and hash. */
  async #signedFiles(index: AppIndex): Promise<Array<{ path: string; target: SignedTarget }>> {
    const files: Array<{ path: string; target: SignedTarget }> = [];
    for (const file of index.files) {
      const name = appFileTargetName(index.board, index.version, file.path);
      const target = await this.#signedTarget(name, 'app-file', index.board, index.version);
      if (target.length !== file.length || target.sha256 !== file.sha256) {
        throw new AppRefused(`${name}: the index and the signed metadata disagree`);
      }
      files.push({ path: file.path, target });
    }
    return files;
  }

  async #signedTarget(
    name: string,
    kind: 'app' | 'app-file',
    board: string,
    version: string,
  ): Promise<SignedTarget> {
    const target = await this.deps.tuf.target(name);
    if (!target) throw new AppRefused(`${name} is not in the signed metadata`);
    const { custom } = target;
    if (custom.kind !== kind || custom.board !== board || custom.appVersion !== version) {
      throw new AppRefused(
        `${name} is signed as ${String(custom.kind)} of ${String(custom.board)} ${String(custom.appVersion)}`,
      );
    }
    return target;
  }

  async #fetch(
    target: SignedTarget,
    destination: string,
    onFetched: (bytes: number) => void,
  ): Promise<void> {
    if (target.length === 0) {
      // Nothing to fetch (the downloader needs a byte); the signed hash must still be the empty one.
      if (target.sha256 !== EMPTY_SHA256) {
        throw new AppRefused(`${target.url}: signed as empty with another SHA-256`);
      }
      await writeFile(destination, '', { flag: 'wx' });
      return;
    }
    let last = 0;
    await downloadResumable({
      file: target,
      destination,
      bucket: this.deps.bucket,
      attempts: 3,
      onProgress: (progress) => {
        onFetched(progress.bytesFetched - last);
        last = progress.bytesFetched;
      },
    });
  }

  /** Points `current` at a release (null: no link) by renaming a new link over it. */
  async #switchCurrent(version: string | null): Promise<void> {
    const { appsDir } = this.deps;
    const link = join(appsDir, CURRENT_LINK);
    if (version === null) {
      await rm(link, { force: true });
    } else {
      const next = join(appsDir, NEW_LINK);
      await rm(next, { force: true });
      await symlink(version, next);
      const existing = await lstat(link).catch(() => undefined);
      if (existing && !existing.isSymbolicLink()) {
        await rm(next, { force: true });
        throw new Error(`${link} is not a symlink: move it away to let the agent manage apps`);
      }
      await rename(next, link);
    }
    await syncDirectory(appsDir);
  }

  async #currentTarget(): Promise<string | null> {
    const target = await readlink(join(this.deps.appsDir, CURRENT_LINK)).catch(() => null);
    return target && !target.includes('/') ? target : null;
  }

  /** Activation after switching back: it must not hide the outcome being reported. */
  async #activateQuietly(): Promise<void> {
    try {
      const outcome = await this.deps.activate();
      if (outcome.refused.length > 0) {
        this.deps.log.warn(
          { refused: outcome.refused },
          'the previous app release has refused modules',
        );
      }
    } catch (error) {
      this.deps.log.error({ err: error }, 'cannot activate the previous app release');
    }
  }

  /** Deletes every release folder but the installed one and the one kept for rollback. */
  async #prune(): Promise<void> {
    const keep = new Set([this.#state.installed, this.#state.previous]);
    const entries = await readdir(this.deps.appsDir, { withFileTypes: true });
    for (const entry of entries) {
      if (!entry.isDirectory() || keep.has(entry.name) || entry.name.endsWith(PARTIAL_SUFFIX)) {
        continue;
      }
      await rm(join(this.deps.appsDir, entry.name), { recursive: true, force: true });
    }
    await syncDirectory(this.deps.appsDir);
  }

  async #setReport(report: Omit<AppReport, 'version'>): Promise<AppReport> {
    this.#state.report = { version: this.#state.installed, ...report };
    await this.deps.stateFile.save(this.#state);
    await this.#onReport?.().catch(() => undefined);
    return this.#state.report;
  }
}

/** Names that the folder layout uses for itself cannot be releases. */
function checkVersionName(version: string): void {
  if (version === CURRENT_LINK || version === NEW_LINK || version.endsWith(PARTIAL_SUFFIX)) {
    throw new AppRefused(`app version '${version}' collides with the folder layout on /data`);
  }
}

/** Syncs a folder and each parent up to (not including) `top`, so new entries are durable. */
async function syncFolderChain(folder: string, top: string): Promise<void> {
  for (let dir = folder; dir.startsWith(top) && dir !== top; dir = dirname(dir)) {
    await syncDirectory(dir);
  }
}

function isBadContent(error: unknown): boolean {
  if (error instanceof DownloadError) {
    return error.code === 'HASH_MISMATCH' || error.code === 'TOO_LONG';
  }
  return error instanceof AppRefused || error instanceof AppIndexError;
}

function addOnce(list: string[], item: string): string[] {
  return list.includes(item) ? list : [...list, item];
}
