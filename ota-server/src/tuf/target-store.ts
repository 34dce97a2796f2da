import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { syncDirectory, tempPathFor } from '@edge/formats';
import { TufRepositoryError } from './errors.js';
import type { RepositoryLayout } from './layout.js';
import { targetFileRelativePath } from './layout.js';

export interface StoredTarget {
  sha256: string;
  length: number;
  /** Under targets/, as a client with consistent snapshots asks for it. */
  relativePath: string;
}

/**
 * Copies a file into targets/ under its content address, hashing the bytes as they are
 * written, so the hash signed is the hash of what is served even if the source changes later.
 */
export async function storeTargetFile(
  layout: RepositoryLayout,
  targetName: string,
  sourcePath: string,
): Promise<StoredTarget> {
  const info = await stat(sourcePath).catch(() => undefined);
  if (!info?.isFile()) {
    throw new TufRepositoryError(
      'TARGET_INVALID',
      `${sourcePath}: not a readable file (for target ${targetName})`,
    );
  }
  const folder = join(layout.targetsDir, dirname(targetName));
  await mkdir(folder, { recursive: true });
  const temp = tempPathFor(join(folder, 'incoming'));
  const hash = createHash('sha256');
  let length = 0;
  try {
    await pipeline(
      createReadStream(sourcePath),
      new Transform({
        transform(chunk: Buffer, _encoding, done) {
          hash.update(chunk);
          length += chunk.length;
          done(null, chunk);
        },
      }),
      createWriteStream(temp, { flags: 'wx', mode: 0o644 }),
    );
    const handle = await open(temp, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    const sha256 = hash.digest('hex');
    const relativePath = targetFileRelativePath(targetName, sha256);
    await rename(temp, join(layout.targetsDir, relativePath));
    await syncDirectory(folder);
    return { sha256, length, relativePath };
  } finally {
    await rm(temp, { force: true });
  }
}
