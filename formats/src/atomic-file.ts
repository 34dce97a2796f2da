import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Temporary files carry this infix, so that a sweep after a crash can find them. */
export const TEMP_INFIX = '.tmp-';

export function tempPathFor(path: string): string {
  return join(
    dirname(path),
    `.${basename(path)}${TEMP_INFIX}${process.pid}-${randomBytes(4).toString('hex')}`,
  );
}

/** Replaces `path` with `data` so that a crash leaves either the old file or the new one. */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  mode = 0o644,
): Promise<void> {
  const temp = tempPathFor(path);
  try {
    const handle = await open(
      temp,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL,
      mode,
    );
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await syncDirectory(dirname(path));
}

/** Makes a rename or a new file in `dir` durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } catch (error) {
    // Some file systems refuse fsync on a folder; their entries reach the disk with the file.
    if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
  } finally {
    await handle.close();
  }
}

const TEMP_NAME = /^\..+\.tmp-(\d+)-[0-9a-f]{8}$/;

/** Removes temporary files that a crashed process (one no longer running) left under `dir`. */
export async function removeStaleTempFiles(
  dir: string,
  isAlive: (pid: number) => boolean,
): Promise<void> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const match = TEMP_NAME.exec(entry.name);
    if (entry.isFile() && match && !isAlive(Number(match[1]))) {
      await rm(join(entry.parentPath, entry.name), { force: true });
    }
  }
}
