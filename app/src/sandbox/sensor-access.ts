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
  return allowed.some((entry) => matchedBy(path, entry) !== undefined);
}

/**
 * What of `path` an allowed entry covers: `path` itself when it is the entry, else the entry
 * and the next component of `path` under it ("/sys/class/hwmon" covers
 * "/sys/class/hwmon/hwmon0/temp1_input" through "/sys/class/hwmon/hwmon0"); undefined when not.
 */
function matchedBy(path: string, entry: string): string | undefined {
  const prefix = trimmed(entry);
  if (path === prefix) return path;
  if (!path.startsWith(`${prefix}/`)) return undefined;
  const next = path.indexOf('/', prefix.length + 1);
  return next === -1 ? path : path.slice(0, next);
}

/** An entry without its trailing "/". */
const trimmed = (entry: string) => (entry.endsWith('/') ? entry.slice(0, -1) : entry);

/** Whether `real` is `folder` or inside it. */
const within = (real: string, folder: string) =>
  real === folder || real.startsWith(folder === '/' ? '/' : `${folder}/`);

/**
 * Sensor files a module may read: a path in the module's whitelist and the device's, under `root`
 * (the "/" of sensor paths). Links are followed as sysfs needs and no further: the file's real
 * path must lie inside the real path of what an entry covers, the entry and the path's next
 * component under it ("/sys/class/hwmon/hwmon0", a link into /sys/devices), so a link deeper
 * down (hwmon0/device, hwmon0/subsystem) or a planted one never leads outside it.
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
    this.#realRoot = this.#real('/');
  }

  #real(path: string): string | undefined {
    try {
      return realpathSync(this.#root === '/' ? path : this.#root + path);
    } catch {
      return undefined;
    }
  }

  /** Whether an entry of `allowed` covers `path`, and the link it may go through stays inside. */
  #allowedIn(path: string, real: string, allowed: readonly string[]): boolean {
    return allowed.some((entry) => {
      const covered = matchedBy(path, entry);
      if (covered === undefined) return false;
      // The file the entry names, as the operator named it.
      if (path === trimmed(entry)) return true;
      if (covered === path) {
        // A file right under a folder entry: itself no link.
        const folder = this.#real(posix.dirname(path));
        return folder !== undefined && real === posix.join(folder, posix.basename(path));
      }
      const coveredReal = this.#real(covered);
      return coveredReal !== undefined && within(real, coveredReal);
    });
  }

  /** Reads at most `into.length` bytes of the sensor; the count, or a negative EdgeError. */
  read(path: string, into: Uint8Array): number {
    // Only plain absolute paths: no "..", ".", "//", trailing "/" or NUL to play with.
    if (!path.startsWith('/') || path.includes('\0') || posix.normalize(path) !== path) {
      return EdgeError.EDENIED;
    }
    if (path.length > 1 && path.endsWith('/')) return EdgeError.EDENIED;
    const { moduleAllow, deviceAllow } = this;
    if (!isWhitelisted(path, moduleAllow) || !isWhitelisted(path, deviceAllow)) {
      return EdgeError.EDENIED;
    }
    if (this.#realRoot === undefined) return EdgeError.EDENIED;
    const real = this.#real(path);
    if (real === undefined) return EdgeError.EIO;
    if (!within(real, this.#realRoot)) return EdgeError.EDENIED;
    if (!this.#allowedIn(path, real, moduleAllow) || !this.#allowedIn(path, real, deviceAllow)) {
      return EdgeError.EDENIED;
    }
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
