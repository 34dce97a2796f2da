import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { dirname } from 'node:path';
import { sha256OfFile, writeFileAtomic } from '@edge/formats';
import type { TokenBucket } from './token-bucket.js';

/** A file the signed metadata describes: where to get it, and what it must be. */
export interface SignedFile {
  url: string;
  length: number;
  sha256: string;
}

export interface DownloadProgress {
  bytesDone: number;
  bytesTotal: number;
  /** Bytes this call fetched (a resumed download starts with bytesDone > 0). */
  bytesFetched: number;
}

export interface DownloadOptions {
  file: SignedFile;
  /** Where the finished file goes; the partial download lives beside it until then. */
  destination: string;
  bucket?: TokenBucket;
  onProgress?: (progress: DownloadProgress) => void;
  signal?: AbortSignal;
  /** Tries per call (each resumes where the last one stopped). */
  attempts?: number;
  retryDelayMs?: number;
  /** A connection that brings no byte for this long is given up and resumed (default 30 s). */
  stallTimeoutMs?: number;
  /** Told of every interrupted try that will be resumed, and when. */
  onRetry?: (error: Error, delayMs: number) => void;
}

export type DownloadErrorCode = 'TOO_LONG' | 'HASH_MISMATCH' | 'HTTP_STATUS' | 'INTERRUPTED';

export class DownloadError extends Error {
  override name = 'DownloadError';
  constructor(
    readonly code: DownloadErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Statuses that say "not now" rather than "no": the download is retried later. */
const TRANSIENT_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

/** Durable progress: the partial file is synced every CHUNK bytes, and a resume drops any tail past the last sync. */
export const CHUNK = 1 << 20;

/**
 * Downloads a signed file with HTTP Range resume. The partial file and its ETag live beside
 * the destination, so a restart or a power cut resumes instead of starting over (at most one
 * chunk is fetched again). The result is checked against the signed length and SHA-256;
 * a server that sends more bytes than signed is refused.
 */
export async function downloadResumable(options: DownloadOptions): Promise<void> {
  const { file, destination } = options;
  if (await hasContent(destination, file)) return;
  await mkdir(dirname(destination), { recursive: true });
  const attempts = options.attempts ?? 5;
  for (let attempt = 1; ; attempt++) {
    try {
      await fetchRemainder(options);
      break;
    } catch (error) {
      options.signal?.throwIfAborted();
      const retryable = !(error instanceof DownloadError) || error.code === 'INTERRUPTED';
      if (!retryable || attempt >= attempts) throw error;
      const delayMs = (options.retryDelayMs ?? 1000) * 2 ** (attempt - 1);
      options.onRetry?.(error as Error, delayMs);
      await sleep(delayMs, undefined, { signal: options.signal }).catch(() =>
        options.signal?.throwIfAborted(),
      );
    }
  }
  const partial = partialPath(destination);
  const actual = await sha256OfFile(partial, undefined, undefined, options.signal);
  if (actual !== file.sha256) {
    await rm(partial, { force: true });
    await rm(metaPath(destination), { force: true });
    throw new DownloadError(
      'HASH_MISMATCH',
      `${file.url}: SHA-256 ${actual}, signed ${file.sha256}`,
    );
  }
  await rename(partial, destination);
  await rm(metaPath(destination), { force: true });
}

async function fetchRemainder(options: DownloadOptions): Promise<void> {
  const { file, destination } = options;
  const partial = partialPath(destination);
  const meta = await readMeta(destination);
  let offset = await resumeOffset(partial, file.length);
  if (offset === file.length) return;

  const headers: Record<string, string> = {};
  if (offset > 0 && meta?.etag) {
    headers.range = `bytes=${offset}-`;
    headers['if-range'] = meta.etag;
  } else {
    offset = 0;
  }
  const stall = new StallGuard(options.stallTimeoutMs ?? 30_000);
  const signal = options.signal ? AbortSignal.any([options.signal, stall.signal]) : stall.signal;
  try {
    await fetchInto(options, offset, headers, signal, stall);
  } catch (error) {
    // Stopped by the caller: its reason, whatever fetch or the bucket made of the abort.
    options.signal?.throwIfAborted();
    if (error instanceof DownloadError && !stall.fired) throw error;
    const why = stall.fired ? stall.reason : (error as Error).message;
    throw new DownloadError('INTERRUPTED', `${file.url}: ${why}`);
  } finally {
    stall.stop();
  }
}

async function fetchInto(
  options: DownloadOptions,
  resumeAt: number,
  headers: Record<string, string>,
  signal: AbortSignal,
  stall: StallGuard,
): Promise<void> {
  const { file, destination } = options;
  const partial = partialPath(destination);
  let offset = resumeAt;
  const response = await fetch(file.url, { headers, signal });
  if (response.status === 200) offset = 0;
  else if (TRANSIENT_STATUS.has(response.status)) {
    throw new DownloadError('INTERRUPTED', `${file.url}: HTTP ${response.status}, to be retried`);
  } else if (response.status !== 206) {
    throw new DownloadError('HTTP_STATUS', `${file.url}: HTTP ${response.status}`);
  } else if (!contentRangeStartsAt(response.headers.get('content-range'), offset)) {
    throw new DownloadError(
      'HTTP_STATUS',
      `${file.url}: Content-Range ${response.headers.get('content-range')} does not start at ${offset}`,
    );
  }
  const etag = response.headers.get('etag');
  if (etag) await writeMeta(destination, { url: file.url, etag });

  const handle = await open(partial, offset === 0 ? 'w' : 'r+');
  let fetched = 0;
  try {
    await handle.truncate(offset);
    let position = offset;
    if (!response.body) throw new DownloadError('INTERRUPTED', `${file.url}: no body`);
    for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
      if (position + chunk.length > file.length) {
        throw new DownloadError(
          'TOO_LONG',
          `${file.url}: the server sent more than the signed ${file.length} bytes`,
        );
      }
      stall.pause(); // waiting for the bandwidth limit is not a dead link
      await options.bucket?.take(chunk.length, signal);
      stall.resume();
      // Synced at each CHUNK boundary before a byte past it is written, so that the size
      // rounded down to a boundary (where a resume starts) never keeps unsynced bytes.
      for (let start = 0; start < chunk.length;) {
        const boundary = (Math.floor(position / CHUNK) + 1) * CHUNK;
        const length = Math.min(chunk.length - start, boundary - position);
        await handle.write(chunk, start, length, position);
        position += length;
        start += length;
        if (position === boundary) await handle.datasync();
      }
      fetched += chunk.length;
      options.onProgress?.({ bytesDone: position, bytesTotal: file.length, bytesFetched: fetched });
    }
    await handle.datasync();
    if (position < file.length) {
      throw new DownloadError(
        'INTERRUPTED',
        `${file.url}: connection ended at byte ${position} of ${file.length}`,
      );
    }
  } finally {
    await handle.close();
  }
}

/**
 * Aborts a transfer that receives nothing for a while: a link that died without a reset
 * (a radio gone, a NAT entry dropped) would otherwise hang the download for good.
 */
class StallGuard {
  readonly #controller = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  fired = false;

  constructor(private readonly ms: number) {
    this.resume();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get reason(): string {
    return `no data for ${this.ms / 1000} s: the connection is given up`;
  }

  /** Restarts the count: call it whenever bytes arrive. */
  resume(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.fired = true;
      this.#controller.abort(new Error(this.reason));
    }, this.ms);
  }

  pause(): void {
    clearTimeout(this.#timer);
  }

  stop(): void {
    clearTimeout(this.#timer);
  }
}

/** Where to resume: the partial file's size rounded down to the last synced chunk. */
async function resumeOffset(partial: string, length: number): Promise<number> {
  const size = await stat(partial).then(
    (s) => s.size,
    () => 0,
  );
  if (size >= length) return size === length ? length : 0;
  return Math.floor(size / CHUNK) * CHUNK;
}

function contentRangeStartsAt(header: string | null, offset: number): boolean {
  return header !== null && new RegExp(`^bytes ${offset}-\\d+/`).test(header);
}

async function hasContent(path: string, file: SignedFile): Promise<boolean> {
  const size = await stat(path).then(
    (s) => s.size,
    () => -1,
  );
  return size === file.length && (await sha256OfFile(path)) === file.sha256;
}

const partialPath = (destination: string) => `${destination}.part`;
const metaPath = (destination: string) => `${destination}.part.json`;

/** The ETag the partial file was fetched with; none (start over) when missing or torn. */
async function readMeta(destination: string): Promise<{ url: string; etag: string } | undefined> {
  try {
    const meta = JSON.parse(await readFile(metaPath(destination), 'utf8')) as unknown;
    const { url, etag } = (meta ?? {}) as { url?: unknown; etag?: unknown };
    return typeof url === 'string' && typeof etag === 'string' ? { url, etag } : undefined;
  } catch {
    return undefined;
  }
}

/** Atomic and synced: a power cut leaves the old ETag or the new one, never a torn file. */
async function writeMeta(destination: string, meta: { url: string; etag: string }): Promise<void> {
  await writeFileAtomic(metaPath(destination), JSON.stringify(meta));
}
