import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readlinkSync,
  readSync,
  realpathSync,
} from 'node:fs';
import { posix } from 'node:path';
import { EdgeError } from './wasm-abi.js';

/** Whether `path` is one of `allowed`, or inside one of them that is a folder. */
export function isWhitelisted(path: string, allowed: readonly string[]): boolean {
  return allowed.some((entry) => {
    const prefix = entry.endsWith('/') ? entry.slice(0, -1) : entry;
    return path === prefix || path.startsWith(`${prefix}/`) || prefix === '';
  });
}

/**
 * Sensor files a module may read: the given path and its real path must both be in the module's
 * whitelist and the device's, under `root` (the "/" of sensor paths).
 */
export class SensorAccess {
  readonly #root: string;
  readonly #realRoot: string | undefined;

  constructor(
    root: string,
    private readonly moduleAllow: readonly string[],
    private readonly deviceAllow: readonly string[],
  ) {
    this.#root = posix.resolve(root);
    try {
      this.#realRoot = realpathSync(this.#root);
    } catch {
      this.#realRoot = undefined;
    }
  }

  #allowed(path: string): boolean {
    return isWhitelisted(path, this.moduleAllow) && isWhitelisted(path, this.deviceAllow);
  }

  /** Reads at most `into.length` bytes of the sensor; the count, or a negative EdgeError. */
  read(path: string, into: Uint8Array): number {
    // Only plain absolute paths: no "..", ".", "//", trailing "/" or NUL to play with.
    if (!path.startsWith('/') || path.includes('\0') || posix.normalize(path) !== path) {
      return EdgeError.EDENIED;
    }
    if (path.length > 1 && path.endsWith('/')) return EdgeError.EDENIED;
    if (!this.#allowed(path) || this.#realRoot === undefined) return EdgeError.EDENIED;
    let real: string;
    try {
      real = realpathSync(this.#root === '/' ? path : this.#root + path);
    } catch {
      return EdgeError.EIO;
    }
    const inside =
      this.#realRoot === '/'
        ? real
        : real.startsWith(`${this.#realRoot}/`)
          ? real.slice(this.#realRoot.length)
          : undefined;
    if (inside === undefined || !this.#allowed(inside)) return EdgeError.EDENIED;
    let fd: number;
    try {
      // O_NOFOLLOW: a link swapped in for the file after the check is refused, not followed.
      fd = openSync(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch {
      return EdgeError.EIO;
    }
    try {
      // O_NOFOLLOW covers the last component only: a folder swapped for a link is caught here.
      if (readlinkSync(`/proc/self/fd/${fd}`) !== real) return EdgeError.EDENIED;
      if (!fstatSync(fd).isFile()) return EdgeError.EIO;
      return into.length === 0 ? 0 : readSync(fd, into, 0, into.length, 0);
    } catch {
      return EdgeError.EIO;
    } finally {
      closeSync(fd);
    }
  }
}
