import { createHash } from 'node:crypto';
import { open, realpath } from 'node:fs/promises';
import { basename, extname, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { contentRange, ifRangeHolds, noneMatch, parseRange } from './byte-range.js';

/** Files this small are read whole to hash them for their ETag (TUF metadata is a few KiB). */
const HASHED_WHOLE_LIMIT = 4 << 20;
const CONTENT_ADDRESSED = /^([0-9a-f]{64})\./;

export interface ServedFolder {
  /** The folder, absolute and without symlinks (see `servedFolder`). */
  root: string;
  cacheControl: (relativePath: string) => string;
}

export async function servedFolder(
  dir: string,
  cacheControl: ServedFolder['cacheControl'],
): Promise<ServedFolder> {
  return { root: await realpath(dir), cacheControl };
}

/**
 * The file a URL path names inside a folder, or undefined: no '..', no empty or dot
 * segments, no backslash or NUL, and no symlink that leads out of the folder.
 */
export async function resolveInside(
  folder: string,
  relativePath: string,
): Promise<string | undefined> {
  if (relativePath === '' || /[\\\0]/.test(relativePath)) return undefined;
  const segments = relativePath.split('/');
  if (segments.some((segment) => segment === '' || segment === '.' || segment === '..')) {
    return undefined;
  }
  const path = resolve(folder, ...segments);
  if (!path.startsWith(folder + sep)) return undefined;
  const real = await realpath(path).catch(() => undefined);
  return real?.startsWith(folder + sep) ? real : undefined;
}

interface OpenedFile {
  size: number;
  etag: string;
  lastModified: string;
  /** The bytes from start to end (inclusive), from the very file the validators describe. */
  body: (start: number, end: number) => Readable | Buffer;
  close: () => Promise<void>;
}

/**
 * Opens a file for an answer. A content-addressed target (`<sha256>.<name>`) has its hash as
 * ETag and streams; any other file (TUF metadata: a few KiB) is read whole through one file
 * handle and hashed, so that a timestamp.json replaced meanwhile cannot pair one version's
 * ETag with another's bytes.
 */
async function openFile(path: string): Promise<OpenedFile | undefined> {
  const handle = await open(path, 'r').catch(() => undefined);
  if (!handle) return undefined;
  let keep = false;
  try {
    const info = await handle.stat();
    if (!info.isFile()) return undefined;
    const lastModified = info.mtime.toUTCString();
    const addressed = CONTENT_ADDRESSED.exec(basename(path))?.[1];
    if (addressed || info.size > HASHED_WHOLE_LIMIT) {
      keep = true;
      return {
        size: info.size,
        etag: addressed
          ? `"${addressed}"`
          : `"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}-${info.ino.toString(16)}"`,
        lastModified,
        body: (start, end) =>
          handle.createReadStream({ start, end, highWaterMark: 256 * 1024, autoClose: true }),
        close: () => handle.close(),
      };
    }
    const bytes = await handle.readFile();
    return {
      size: bytes.length,
      etag: `"${createHash('sha256').update(bytes).digest('hex')}"`,
      lastModified,
      body: (start, end) => bytes.subarray(start, end + 1),
      close: async () => undefined,
    };
  } finally {
    if (!keep) await handle.close();
  }
}

/**
 * Answers a GET or HEAD for a file of a served folder: 200, 206 for one satisfiable range,
 * 416 for an unsatisfiable one, 304 when If-None-Match matches, the whole file when If-Range
 * names other bytes. The body streams from disk.
 */
export async function sendFile(
  request: FastifyRequest,
  reply: FastifyReply,
  folder: ServedFolder,
  relativePath: string,
): Promise<boolean> {
  const path = await resolveInside(folder.root, relativePath);
  if (path === undefined) return false;
  const file = await openFile(path);
  if (!file) return false;
  let streaming = false;
  try {
    const { size, etag, lastModified } = file;
    void reply
      .header('etag', etag)
      .header('last-modified', lastModified)
      .header('accept-ranges', 'bytes')
      .header('cache-control', folder.cacheControl(relativePath))
      .header(
        'content-type',
        extname(path) === '.json' ? 'application/json' : 'application/octet-stream',
      );

    if (noneMatch(request.headers['if-none-match'], etag)) {
      await reply.code(304).send();
      return true;
    }
    const range = ifRangeHolds(header(request.headers['if-range']), etag, lastModified)
      ? parseRange(request.headers.range, size)
      : ({ kind: 'none' } as const);
    if (range.kind === 'unsatisfiable') {
      await reply.code(416).header('content-range', `bytes */${size}`).send();
      return true;
    }
    const { start, end } = range.kind === 'range' ? range.range : { start: 0, end: size - 1 };
    const length = end - start + 1;
    if (range.kind === 'range') {
      void reply.code(206).header('content-range', contentRange(range.range, size));
    }
    void reply.header('content-length', String(length));
    if (request.method === 'HEAD' || length === 0) {
      await reply.send();
      return true;
    }
    const body = file.body(start, end);
    // The stream closes the file handle when it ends or is destroyed.
    streaming = !Buffer.isBuffer(body);
    await reply.send(body);
    return true;
  } finally {
    if (!streaming) await file.close();
  }
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
