import { copyFile, mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { targetFileRelativePath } from '@edge/formats';
import { Updater } from 'tuf-js';

/** A target as the signed metadata describes it, with the URL of its consistent-snapshot copy. */
export interface SignedTarget {
  name: string;
  url: string;
  length: number;
  sha256: string;
  custom: Record<string, unknown>;
}

export interface TufClientOptions {
  /** The update server's TUF metadata and targets, e.g. http://server/tuf/metadata. */
  metadataUrl: string;
  targetsUrl: string;
  /** Trusted metadata cache on /data; survives reboots and follows root rotations. */
  cacheDir: string;
  /** The root.json baked into the image: the trust anchor when the cache has none. */
  trustedRootPath: string;
}

/**
 * TUF metadata through tuf-js: refresh (timestamp, snapshot, targets, root rotations), then
 * signed facts about targets. Downloads are the agent's own (resumable, rate-limited).
 */
export class TufClient {
  #updater: Updater | undefined;

  constructor(private readonly options: TufClientOptions) {}

  async refresh(): Promise<void> {
    try {
      this.#updater = await this.#newUpdater();
      await this.#updater.refresh();
    } catch (error) {
      // tuf-js writes its cache without a rename: a power cut can leave a torn file. Start
      // over from the baked-in root once; the server's root chain brings it up to date.
      if (!isUnreadableCache(error)) throw error;
      await rm(this.options.cacheDir, { recursive: true, force: true });
      this.#updater = await this.#newUpdater();
      await this.#updater.refresh();
    }
  }

  /** The signed description of a target, or undefined when the metadata has no such target. */
  async target(name: string): Promise<SignedTarget | undefined> {
    if (!this.#updater) throw new Error('TufClient: refresh() first');
    const info = await this.#updater.getTargetInfo(name);
    if (!info) return undefined;
    const sha256 = info.hashes.sha256;
    if (!sha256) throw new Error(`target ${name} has no sha256 hash`);
    return {
      name,
      url: `${this.options.targetsUrl.replace(/\/$/, '')}/${targetFileRelativePath(name, sha256)}`,
      length: info.length,
      sha256,
      custom: info.custom,
    };
  }

  async #newUpdater(): Promise<Updater> {
    const metadataDir = join(this.options.cacheDir, 'metadata');
    await mkdir(metadataDir, { recursive: true });
    const root = join(metadataDir, 'root.json');
    if (!(await stat(root).catch(() => undefined)))
      await copyFile(this.options.trustedRootPath, root);
    return new Updater({
      metadataDir,
      metadataBaseUrl: this.options.metadataUrl,
      targetBaseUrl: this.options.targetsUrl,
      config: { fetchTimeout: 30_000, fetchRetries: 2 },
    });
  }
}

function isUnreadableCache(error: unknown): boolean {
  return error instanceof SyntaxError || /JSON|Unexpected (token|end)/i.test(String(error));
}
