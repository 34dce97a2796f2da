import { open } from 'node:fs/promises';
import { applyBsdiff40Delta, sha256OfFile, storageLength } from '@edge/formats';

export interface SlotWriteProgress {
  bytesDone: number;
  bytesTotal: number;
}

export class SlotWriteError extends Error {
  override name = 'SlotWriteError';
}

/** The standby slot must hold the whole image: a partition too small is refused before a byte is written. */
async function checkCapacity(standbyPath: string, length: number): Promise<void> {
  const capacity = await storageLength(standbyPath).catch(() => Infinity);
  if (capacity < length) {
    throw new SlotWriteError(
      `the standby slot ${standbyPath} is too small: it holds ${capacity} bytes; the image needs ${length}`,
    );
  }
}

/** A full standby slot (a file-backed one on a full filesystem) says so; other errors pass. */
export function explainSlotWriteError(error: unknown, standbyPath: string): Error {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC') return new SlotWriteError(`the standby slot ${standbyPath} is full`);
  return error as Error;
}

/** Writes a full image into the standby slot, streaming, and syncs it. */
export async function writeImageToSlot(options: {
  imagePath: string;
  standbyPath: string;
  length: number;
  onProgress?: (progress: SlotWriteProgress) => void;
  signal?: AbortSignal;
}): Promise<void> {
  const { imagePath, standbyPath, length } = options;
  await checkCapacity(standbyPath, length);
  const source = await open(imagePath, 'r');
  const target = await open(standbyPath, 'r+');
  try {
    const buffer = Buffer.allocUnsafe(1 << 20);
    let done = 0;
    while (done < length) {
      options.signal?.throwIfAborted();
      const { bytesRead } = await source.read(
        buffer,
        0,
        Math.min(buffer.length, length - done),
        done,
      );
      if (bytesRead === 0)
        throw new SlotWriteError(`${imagePath} ended at byte ${done} of ${length}`);
      await target.write(buffer, 0, bytesRead, done);
      done += bytesRead;
      options.onProgress?.({ bytesDone: done, bytesTotal: length });
    }
    await target.datasync();
  } catch (error) {
    throw explainSlotWriteError(error, standbyPath);
  } finally {
    await Promise.all([source.close(), target.close()]);
  }
}

/** Rebuilds the new image in the standby slot from the running slot and a BSDIFF40 delta. */
export async function applyDeltaToSlot(options: {
  deltaPath: string;
  runningPath: string;
  runningLength: number;
  standbyPath: string;
  length: number;
  onProgress?: (progress: SlotWriteProgress) => void;
  signal?: AbortSignal;
}): Promise<void> {
  await checkCapacity(options.standbyPath, options.length);
  const target = await open(options.standbyPath, 'r+');
  try {
    await applyBsdiff40Delta({
      oldPath: options.runningPath,
      oldSize: options.runningLength,
      patchPath: options.deltaPath,
      newFd: target,
      newOffset: 0,
      newSize: options.length,
      sync: true,
      onProgress: options.onProgress,
      signal: options.signal,
    });
  } catch (error) {
    throw explainSlotWriteError(error, options.standbyPath);
  } finally {
    await target.close();
  }
}

/** Whether the standby slot now holds exactly the signed image. */
export async function slotMatches(
  standbyPath: string,
  length: number,
  sha256: string,
  signal?: AbortSignal,
): Promise<boolean> {
  return (await sha256OfFile(standbyPath, length, undefined, signal)) === sha256;
}
