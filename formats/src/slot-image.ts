import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';

/** ext4 superblock: 1024 bytes in, magic 0xEF53 at byte 56 of it. */
const EXT4_SUPERBLOCK_OFFSET = 1024;
const EXT4_MAGIC = 0xef53;
const READ_CHUNK = 1 << 20;

export interface SlotHashProgress {
  bytesDone: number;
  bytesTotal: number;
}

/**
 * The length of the slot image held at the start of a file or block device.
 *
 * A slot partition is usually larger than the image written into it, so the
 * image's own length comes from its ext4 superblock (block count x block size).
 * Anything that is not ext4 counts as a whole.
 */
export async function slotImageLength(path: string): Promise<number> {
  return (await ext4ImageLength(path)) ?? (await storageLength(path));
}

/**
 * The length an ext4 superblock at the start of `path` declares (block count x block size),
 * or undefined when there is no ext4 superblock. A file shorter than that is refused.
 */
export async function ext4ImageLength(path: string): Promise<number | undefined> {
  const handle = await open(path, 'r');
  try {
    const superblock = Buffer.alloc(1024);
    const { bytesRead } = await handle.read(superblock, 0, 1024, EXT4_SUPERBLOCK_OFFSET);
    if (bytesRead < 1024 || superblock.readUInt16LE(56) !== EXT4_MAGIC) return undefined;
    const blocksLo = superblock.readUInt32LE(4);
    const logBlockSize = superblock.readUInt32LE(24);
    const featureIncompat = superblock.readUInt32LE(96);
    const is64bit = (featureIncompat & 0x80) !== 0;
    const blocksHi = is64bit ? superblock.readUInt32LE(336) : 0;
    const length = (blocksHi * 2 ** 32 + blocksLo) * 2 ** (10 + logBlockSize);
    if (length === 0) return undefined;
    const available = await lengthOf(handle);
    if (length > available) {
      throw new Error(
        `${path}: its ext4 superblock says ${length} bytes but it holds ${available}: truncated image`,
      );
    }
    return length;
  } finally {
    await handle.close();
  }
}

async function lengthOf(handle: Awaited<ReturnType<typeof open>>): Promise<number> {
  const stat = await handle.stat();
  if (!stat.isBlockDevice()) return stat.size;
  // stat reports size 0 for a block device; sysfs has it in 512-byte sectors.
  const major = Math.floor(stat.rdev / 256) & 0xfff;
  const minor = (stat.rdev & 0xff) | (Math.floor(stat.rdev / 4096) & ~0xff);
  const sectors = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
  return Number(sectors.trim()) * 512;
}

/** SHA-256 (hex) of the slot image at the start of `path`, read in 1 MiB chunks. */
export async function hashSlotImage(
  path: string,
  onProgress?: (progress: SlotHashProgress) => void,
): Promise<{ sha256: string; length: number }> {
  const length = await slotImageLength(path);
  return { sha256: await sha256OfFile(path, length, onProgress), length };
}

/** The size of a file or block device (a partition's size, not the image's in it). */
export async function storageLength(path: string): Promise<number> {
  const handle = await open(path, 'r');
  try {
    return await lengthOf(handle);
  } finally {
    await handle.close();
  }
}

/** SHA-256 (hex) of the first `length` bytes of a file or device (all of it by default). */
export async function sha256OfFile(
  path: string,
  length?: number,
  onProgress?: (progress: SlotHashProgress) => void,
  signal?: AbortSignal,
): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const total = length ?? (await lengthOf(handle));
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(READ_CHUNK);
    let done = 0;
    while (done < total) {
      signal?.throwIfAborted();
      const want = Math.min(READ_CHUNK, total - done);
      const { bytesRead } = await handle.read(buffer, 0, want, done);
      if (bytesRead === 0) throw new Error(`${path} ended at byte ${done} of ${total}`);
      hash.update(buffer.subarray(0, bytesRead));
      done += bytesRead;
      onProgress?.({ bytesDone: done, bytesTotal: total });
    }
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}
