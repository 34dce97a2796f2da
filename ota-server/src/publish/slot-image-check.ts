import { stat } from 'node:fs/promises';
import { ext4ImageLength } from '@edge/formats';
import { PublishError } from './errors.js';

/**
 * Checks that a file is an ext4 slot image and nothing more: the superblock magic, every
 * block the superblock counts present, and no bytes past the filesystem's end (the device
 * hashes exactly the filesystem's length). Resolves to its length.
 */
export async function checkSlotImage(path: string): Promise<number> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) throw new PublishError('IMAGE_INVALID', `${path}: not a readable file`);
  let length: number | undefined;
  try {
    length = await ext4ImageLength(path);
  } catch (error) {
    throw new PublishError('IMAGE_INVALID', (error as Error).message);
  }
  if (length === undefined) {
    throw new PublishError('IMAGE_INVALID', `${path}: not an ext4 slot image (no ext4 superblock)`);
  }
  if (length !== info.size) {
    throw new PublishError(
      'IMAGE_INVALID',
      `${path}: holds ${info.size - length} bytes past its ext4 filesystem's end (${length} bytes); ` +
        'publish the filesystem image itself, not a partition copy',
    );
  }
  return length;
}
