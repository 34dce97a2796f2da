import { open, stat } from 'node:fs/promises';
import { slotImageLength } from '@edge/formats';
import { PublishError } from './errors.js';

/** Where ext4 keeps its superblock magic: 1024 bytes in, then byte 56 of the superblock. */
const EXT4_MAGIC_OFFSET = 1024 + 56;
const EXT4_MAGIC = 0xef53;

/**
 * Checks that a file is an ext4 slot image and nothing more: the superblock magic, every
 * block the superblock counts present, and no bytes past the filesystem's end (the device
 * hashes exactly the filesystem's length). Resolves to its length.
 */
export async function checkSlotImage(path: string): Promise<number> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) throw new PublishError('IMAGE_INVALID', `${path}: not a readable file`);
  const magic = Buffer.alloc(2);
  const handle = await open(path, 'r');
  try {
    const { bytesRead } = await handle.read(magic, 0, 2, EXT4_MAGIC_OFFSET);
    if (bytesRead < 2 || magic.readUInt16LE(0) !== EXT4_MAGIC) {
      throw new PublishError(
        'IMAGE_INVALID',
        `${path}: not an ext4 slot image (no ext4 superblock magic at byte ${EXT4_MAGIC_OFFSET})`,
      );
    }
  } finally {
    await handle.close();
  }
  let length: number;
  try {
    length = await slotImageLength(path);
  } catch (error) {
    throw new PublishError('IMAGE_INVALID', (error as Error).message);
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
