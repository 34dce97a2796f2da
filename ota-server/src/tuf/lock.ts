import { link, readFile, unlink, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempPathFor } from '@edge/formats';
import { TufRepositoryError } from './errors.js';

export interface LockOptions {
  /** How long to wait for another writer before giving up. */
  lockTimeoutMs?: number;
  /** Told when a dead process's lock is taken over. */
  warn?: (message: string) => void;
}

const POLL_MS = 25;

/**
 * Runs `work` while holding the lock file (created exclusively, our pid inside). A lock whose
 * pid is not alive was left by a crash and is taken over. Calls in one process queue up too.
 */
export async function withLock<T>(
  lockFile: string,
  work: () => Promise<T>,
  options: LockOptions = {},
): Promise<T> {
  const deadline = Date.now() + (options.lockTimeoutMs ?? 30_000);
  const warn = options.warn ?? defaultWarn;
  for (;;) {
    if (await tryCreate(lockFile)) break;
    const holder = await readHolder(lockFile);
    if (holder === undefined) continue; // released between our two calls
    if (!isAlive(holder.pid)) {
      // Unlink only the file we read, not a lock someone took over meanwhile.
      const again = await readHolder(lockFile);
      if (again?.text === holder.text) {
        warn(
          `${lockFile}: taking over the lock of process ${holder.pid}, which is not running (crashed?)`,
        );
        await unlink(lockFile).catch(ignoreMissing);
      }
      continue;
    }
    if (Date.now() > deadline) {
      throw new TufRepositoryError(
        'REPOSITORY_LOCKED',
        `${lockFile}: held by running process ${holder.pid}; try again when it is done`,
      );
    }
    await sleep(POLL_MS);
  }
  try {
    return await work();
  } finally {
    await unlink(lockFile).catch(ignoreMissing);
  }
}

/** The lock appears with its pid already inside (link is atomic and refuses an existing name). */
async function tryCreate(lockFile: string): Promise<boolean> {
  const temp = tempPathFor(lockFile);
  await writeFile(temp, `${process.pid}\n`, { flag: 'wx' });
  try {
    await link(temp, lockFile);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await unlink(temp);
  }
}

async function readHolder(lockFile: string): Promise<{ pid: number; text: string } | undefined> {
  try {
    const text = await readFile(lockFile, 'utf8');
    const pid = Number.parseInt(text, 10);
    return { pid: Number.isInteger(pid) && pid > 0 ? pid : 0, text };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

export function isAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ignoreMissing(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
}

function defaultWarn(message: string): void {
  process.stderr.write(`ota-server: ${message}\n`);
}
