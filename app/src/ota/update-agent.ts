import { mkdir, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { DeltaError, deltaTargetName, otherSlot, type SlotName } from '@edge/formats';
import type { BootState } from '../boot-state.js';
import type { FirmwareHash } from '../firmware-hash.js';
import type { SlotHashRecords } from '../slot-hash-records.js';
import type { Readiness } from '../readiness.js';
import type { AppInstaller } from './app-installer.js';
import type { OtaState, OtaStateFile, PendingUpdate } from './ota-state.js';
import { DownloadError, downloadResumable, type DownloadProgress } from './resumable-download.js';
import { afterFailure, waitsForRetry } from './update-retry.js';
import { applyDeltaToSlot, slotMatches, writeImageToSlot } from './slot-writer.js';
import type { TokenBucket } from './token-bucket.js';
import type { SignedTarget, TufClient } from './tuf-client.js';
import type {
  CheckInAnswer,
  DesiredRelease,
  UpdateServerClient,
  UpdateStatus,
} from './update-server-client.js';

export interface AgentLog {
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
  error(object: object, message: string): void;
}

export interface UpdateAgentDeps {
  client: UpdateServerClient;
  tuf: TufClient;
  stateFile: OtaStateFile;
  bootState: BootState;
  firmwareHash: FirmwareHash;
  readiness: Readiness;
  /** What this slot runs, from /etc/edge/release.json, and the board it runs on. */
  release: { version: string; board: string };
  /** The standby slot's device (or file, on a host) for a slot name. */
  standbyPath: (slot: SlotName, runningPath: string) => string;
  bucket: TokenBucket;
  downloadsDir: string;
  /** A download connection that brings nothing for this long is dropped and resumed. */
  downloadStallMs?: number;
  reboot: () => Promise<void>;
  log: AgentLog;
  /** A trial slot that is not healthy within this long stays uncommitted, for U-Boot to undo. */
  healthDeadlineMs: number;
  /** Seconds between check-ins until the server says otherwise. */
  checkInSeconds: number;
  /** Installs app releases (WASM modules, configuration) without a reboot; none: not managed. */
  apps?: AppInstaller;
  /** Each slot's hash as last verified: forgotten before a slot is written, kept once it verifies. */
  slotHashes?: SlotHashRecords;
}

export class UpdateFailed extends Error {
  override name = 'UpdateFailed';
}

/** Why work in progress stopped: the edge server is stopping, not the update failing. */
export class AgentStopping extends Error {
  override name = 'AgentStopping';
  constructor() {
    super('the update agent is stopping');
  }
}

/**
 * The update agent's workflow: check in, learn the release to run, refresh TUF metadata,
 * download the delta (or the image), write the standby slot, verify it, set the boot flags,
 * reboot; after the reboot, commit once healthy. Each step's mechanics live in its own module.
 */
export class UpdateAgent {
  #state: OtaState = { status: { state: 'idle' }, failedVersions: [], deltaRefusedVersions: [] };
  #timer: NodeJS.Timeout | undefined;
  #busy: Promise<void> | undefined;
  #stopped = false;
  /** Aborted by stop(): a download, a slot write or a verification stops at its next chunk. */
  readonly #stopping = new AbortController();
  #lastProgressReport = 0;

  constructor(private readonly deps: UpdateAgentDeps) {}

  get status(): UpdateStatus {
    return this.#state.status;
  }

  get failedVersions(): readonly string[] {
    return this.#state.failedVersions;
  }

  get lastDownload(): OtaState['lastDownload'] {
    return this.#state.lastDownload;
  }

  /** The app release's status, when the agent manages apps. */
  get appStatus(): AppInstaller['report'] | undefined {
    return this.deps.apps?.report;
  }

  /** Settles what the last boot left (commit or record a fallback), then checks in periodically. */
  async start(): Promise<void> {
    await this.load();
    await this.settleAfterBoot();
    this.#schedule(0);
  }

  /** Picks up what the agent was doing before this start (a power cut, a reboot). */
  async load(): Promise<void> {
    this.#state = await this.deps.stateFile.load();
    await this.deps.apps?.load();
  }

  /**
   * Stops at once: an update in progress stops where it is (its state is saved as it goes, so
   * the next start resumes the download and redoes the slot write) and is not reported failed.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopping.abort(new AgentStopping());
    clearTimeout(this.#timer);
    await this.#busy;
  }

  #schedule(seconds: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#busy = this.cycle()
        .then((next) => this.#schedule(next))
        .catch((error: unknown) => {
          this.deps.log.warn({ err: error }, 'update check failed');
          this.#schedule(this.deps.checkInSeconds);
        });
    }, seconds * 1000);
    this.#timer.unref();
  }

  /**
   * After a boot, the boot flags (kept by U-Boot) say how the pending update went: a trial of
   * its slot commits once healthy; a slot U-Boot gave up on is reported as rolled back (its
   * version joins failedVersions, not tried again); a slot committed already (a cut before
   * the status was saved) is reported as committed.
   */
  async settleAfterBoot(): Promise<void> {
    const booted = await this.deps.bootState.booted();
    const pending = this.#state.pending;
    if (pending && booted) {
      const flags = await this.deps.bootState.store.read();
      const slot = pending.standbySlot;
      if (booted.trial && booted.slot === slot && flags.trial === slot) {
        if (!(await this.#healthy())) {
          if (!this.#stopped) {
            this.deps.log.error(
              { slot },
              'not healthy within the deadline: leaving the slot to the bootloader',
            );
          }
          return;
        }
        await this.deps.bootState.commitIfTrial();
        await this.#finish({ state: 'committed', targetVersion: pending.version });
        this.deps.log.info({ version: pending.version, slot }, 'update committed');
        return;
      }
      if (booted.slot === slot && flags.committed === slot) {
        await this.#finish({ state: 'committed', targetVersion: pending.version });
      } else if (
        booted.slot !== slot &&
        flags.failedUpgrade === slot &&
        !flags.trial &&
        // Only an update that set the flags can have failed in the bootloader; one cut short
        // before (a power cut, a stop) leaves an older fallback's failedUpgrade, not its own.
        this.#state.status.state === 'rebooting'
      ) {
        const reason = `slot ${slot} did not come up in ${flags.attemptLimit} attempts: the bootloader went back to slot ${booted.slot}`;
        this.#state.failedVersions = addOnce(this.#state.failedVersions, pending.version);
        await this.#finish({ state: 'rolled-back', targetVersion: pending.version, reason });
        this.deps.log.error({ version: pending.version }, reason);
      }
    }
    // Not a trial of ours: nothing to commit, but the trial watchdog may stop waiting.
    if (await this.#healthy()) await this.deps.bootState.commitIfTrial();
  }

  /** One check-in, and the updates it asks for. Resolves to the seconds until the next one. */
  async cycle(): Promise<number> {
    const answer = await this.#checkIn();
    const desired = answer.desired;
    const next = answer.checkInSeconds || this.deps.checkInSeconds;
    if (desired && this.#wants(desired)) {
      try {
        await this.update(desired);
        // Rebooting into the new slot: the app release waits for the next check-in there.
        return next;
      } catch (error) {
        if (error instanceof AgentStopping) {
          this.deps.log.info(
            { version: desired.version, state: this.status.state },
            'update paused: the agent is stopping; the next start resumes it',
          );
          return next;
        }
        const reason = (error as Error).message;
        this.#state.retry = afterFailure(this.#state.retry, desired.version, next, new Date());
        this.deps.log.error(
          { err: error, version: desired.version, retryAfter: this.#state.retry.notBefore },
          'update failed',
        );
        await this.#finish({ state: 'failed', targetVersion: desired.version, reason });
        await this.#checkIn().catch(() => undefined);
      }
    }
    const app = answer.app;
    const { apps } = this.deps;
    if (app && apps?.wants(app)) {
      // No reboot: the installer switches `current` and the sandbox reloads the modules.
      await apps.install(app, () => this.#checkIn());
      await this.#checkIn().catch(() => undefined);
    }
    return next;
  }

  #wants(desired: DesiredRelease): boolean {
    const { release } = this.deps;
    if (desired.board !== release.board || desired.version === release.version) return false;
    return (
      !this.#state.failedVersions.includes(desired.version) &&
      !waitsForRetry(this.#state.retry, desired.version, new Date())
    );
  }

  /** Installs the desired release into the standby slot and reboots into it. */
  async update(desired: DesiredRelease): Promise<void> {
    const { deps } = this;
    const running = await this.#runningFirmware();
    const booted = await deps.bootState.booted();
    if (!booted) throw new UpdateFailed('not booted by the edge boot script: no standby slot');
    const standbySlot = otherSlot(booted.slot);
    const standbyPath = deps.standbyPath(standbySlot, running.slotPath);
    await deps.bootState.store.releaseStandby(standbySlot);

    await deps.tuf.refresh();
    const image = await deps.tuf.target(desired.imageTarget);
    if (!image) throw new UpdateFailed(`${desired.imageTarget} is not in the signed metadata`);
    if (image.custom.board !== desired.board || image.custom.version !== desired.version) {
      throw new UpdateFailed(
        `${desired.imageTarget} is signed for ${String(image.custom.board)} ${String(image.custom.version)}`,
      );
    }
    // Killed while verifying or setting the flags: a standby slot that verifies is not rewritten.
    const signal = this.#stopping.signal;
    if (this.#wroteSlot(desired.version, standbySlot)) {
      await this.#setStatus({ state: 'verifying', targetVersion: desired.version });
      if (await slotMatches(standbyPath, image.length, image.sha256, signal)) {
        await this.#verified(standbyPath, image);
        await this.#rebootInto(desired.version, standbySlot);
        return;
      }
    }
    const deltaRefused = this.#state.deltaRefusedVersions.includes(desired.version);
    const delta = deltaRefused ? undefined : await this.#deltaFor(desired, running.hash);
    const pending: PendingUpdate = {
      version: desired.version,
      imageTarget: image.name,
      imageSha256: image.sha256,
      imageLength: image.length,
      standbySlot,
      deltaTarget: delta?.name,
    };
    this.#state.pending = pending;
    const download = delta ?? image;

    await this.#setStatus({
      state: 'downloading',
      targetVersion: desired.version,
      bytesDone: 0,
      bytesTotal: download.length,
      progress: 0,
    });
    const downloaded = join(deps.downloadsDir, download.sha256);
    try {
      await mkdir(deps.downloadsDir, { recursive: true });
      await checkFreeSpace(deps.downloadsDir, download.length);
      await downloadResumable({
        file: download,
        destination: downloaded,
        bucket: deps.bucket,
        stallTimeoutMs: deps.downloadStallMs,
        signal,
        onRetry: (error, delayMs) =>
          deps.log.warn({ reason: error.message, delayMs }, 'download interrupted: resuming'),
        onProgress: (progress) => this.#progress('downloading', desired.version, progress),
      });
      this.#state.lastDownload = { target: download.name, bytes: download.length };

      await this.#setStatus({ state: 'applying', targetVersion: desired.version, progress: 0 });
      await deps.slotHashes?.forget(standbyPath);
      const onProgress = (p: { bytesDone: number; bytesTotal: number }) =>
        this.#progress('applying', desired.version, { ...p, bytesFetched: 0 });
      if (delta) {
        await applyDeltaToSlot({
          deltaPath: downloaded,
          runningPath: running.slotPath,
          runningLength: running.length,
          standbyPath,
          length: image.length,
          onProgress,
          signal,
        });
      } else {
        await writeImageToSlot({
          imagePath: downloaded,
          standbyPath,
          length: image.length,
          onProgress,
          signal,
        });
      }

      await this.#setStatus({ state: 'verifying', targetVersion: desired.version });
      if (!(await slotMatches(standbyPath, image.length, image.sha256, signal))) {
        throw new UpdateFailed(`the standby slot does not match the signed image ${image.name}`);
      }
      await this.#verified(standbyPath, image);
    } catch (error) {
      // Bytes that do not match the signed target, or a delta that will not apply or gives the
      // wrong image: the file goes, and a delta is not used again for this release (the next
      // try takes the image). Anything else (a cut connection, a full disk) is tried again.
      if (isBadContent(error)) {
        if (delta) this.#refuseDelta(desired.version);
        await removeDownload(downloaded);
      }
      throw error;
    }
    await removeDownload(downloaded);
    await this.#rebootInto(desired.version, standbySlot);
  }

  /** The slot just read back matches the signed image: its next boot need not read it again. */
  async #verified(standbyPath: string, image: { sha256: string; length: number }): Promise<void> {
    await this.deps.slotHashes
      ?.remember(standbyPath, { sha256: image.sha256, length: image.length })
      .catch((error: unknown) =>
        this.deps.log.warn({ err: error }, 'slot hash not recorded: the next boot measures it'),
      );
  }

  /** Only with the standby slot verified do the boot flags change. */
  async #rebootInto(version: string, standbySlot: SlotName): Promise<void> {
    this.#state.retry = undefined;
    await this.#setStatus({ state: 'rebooting', targetVersion: version });
    await this.deps.bootState.store.startTrial(standbySlot);
    await this.#checkIn().catch(() => undefined);
    this.deps.log.info({ version, slot: standbySlot }, 'rebooting into the new slot');
    await this.deps.reboot();
  }

  /** Whether the last run got as far as writing this release into this slot. */
  #wroteSlot(version: string, standbySlot: SlotName): boolean {
    const { pending, status } = this.#state;
    return (
      pending?.version === version &&
      pending.standbySlot === standbySlot &&
      (status.state === 'verifying' || status.state === 'rebooting')
    );
  }

  /** A delta that did not apply or verify is not fetched again: the next try takes the full image. */
  #refuseDelta(version: string): void {
    this.#state.deltaRefusedVersions = addOnce(this.#state.deltaRefusedVersions, version);
  }

  async #deltaFor(desired: DesiredRelease, runningHash: string): Promise<SignedTarget | undefined> {
    const name = deltaTargetName(desired.board, desired.version, this.deps.release.version);
    const delta = await this.deps.tuf.target(name).catch(() => undefined);
    return delta?.custom.sourceSha256 === runningHash ? delta : undefined;
  }

  async #healthy(): Promise<boolean> {
    const deadline = Date.now() + this.deps.healthDeadlineMs;
    while (Date.now() < deadline && !this.#stopped) {
      if (this.deps.readiness.ready) {
        try {
          await this.#checkIn();
          return true;
        } catch (error) {
          this.deps.log.warn({ err: error }, 'health check: update server not reachable yet');
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
    return false;
  }

  /** The running slot's path, length and hash, once known; an update cannot go without them. */
  async #runningFirmware() {
    const running = await this.deps.firmwareHash.done;
    if (running.state !== 'known') {
      const why = running.state === 'failed' ? running.reason : 'not computed';
      throw new UpdateFailed(`the running slot's hash is unknown: ${why}`);
    }
    return running;
  }

  async #checkIn(): Promise<CheckInAnswer> {
    const running = await this.#runningFirmware();
    const booted = await this.deps.bootState.booted();
    return this.deps.client.checkIn({
      board: this.deps.release.board,
      slot: booted?.slot ?? 'a',
      firmwareHash: running.hash,
      version: this.deps.release.version,
      update: this.#state.status,
      ...(this.deps.apps && { app: this.deps.apps.report }),
    });
  }

  #progress(state: 'downloading' | 'applying', version: string, progress: DownloadProgress): void {
    this.#state.status = {
      state,
      targetVersion: version,
      bytesDone: progress.bytesDone,
      bytesTotal: progress.bytesTotal,
      progress: progress.bytesTotal ? progress.bytesDone / progress.bytesTotal : 0,
    };
    const now = Date.now();
    if (now - this.#lastProgressReport >= 5000) {
      this.#lastProgressReport = now;
      void this.deps.stateFile.save(this.#state).catch(() => undefined);
      void this.#checkIn().catch(() => undefined);
    }
  }

  async #setStatus(status: UpdateStatus): Promise<void> {
    this.#state.status = status;
    await this.deps.stateFile.save(this.#state);
    await this.#checkIn().catch((error: unknown) =>
      this.deps.log.warn({ err: error }, 'status report failed'),
    );
  }

  async #finish(status: UpdateStatus): Promise<void> {
    this.#state.status = status;
    this.#state.pending = undefined;
    await this.deps.stateFile.save(this.#state);
    await this.#checkIn().catch(() => undefined);
  }
}

function addOnce(list: string[], item: string): string[] {
  return list.includes(item) ? list : [...list, item];
}

/** Whether a failure says the bytes are wrong, as opposed to "not now". */
function isBadContent(error: unknown): boolean {
  if (error instanceof DownloadError)
    return error.code === 'HASH_MISMATCH' || error.code === 'TOO_LONG';
  return error instanceof DeltaError || error instanceof UpdateFailed;
}

async function removeDownload(path: string): Promise<void> {
  await Promise.all(
    [path, `${path}.part`, `${path}.part.json`].map((file) => rm(file, { force: true })),
  );
}

/** A download that cannot fit on /data fails at once, with the figures, instead of filling it. */
async function checkFreeSpace(dir: string, bytes: number): Promise<void> {
  const stats = await statfs(dir);
  const free = stats.bavail * stats.bsize;
  if (free < bytes) {
    throw new UpdateFailed(`${dir} has ${free} bytes free; the download needs ${bytes}`);
  }
}
