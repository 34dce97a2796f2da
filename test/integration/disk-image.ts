import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, readSync, writeSync } from 'node:fs';

export interface Partition {
  number: number;
  offset: number;
  size: number;
}

/** The four primary partitions of an MBR disk image. */
export function partitionsOf(disk: string): Partition[] {
  const fd = openSync(disk, 'r');
  try {
    const mbr = Buffer.alloc(512);
    readSync(fd, mbr, 0, 512, 0);
    if (mbr.readUInt16LE(510) !== 0xaa55) throw new Error(`${disk} has no MBR`);
    return [0, 1, 2, 3].map((index) => {
      const entry = 446 + index * 16;
      return {
        number: index + 1,
        offset: mbr.readUInt32LE(entry + 8) * 512,
        size: mbr.readUInt32LE(entry + 12) * 512,
      };
    });
  } finally {
    closeSync(fd);
  }
}

/** A sparse copy of a disk image, so every scenario starts from a fresh disk. */
export function copyDisk(source: string, destination: string): void {
  execFileSync('cp', ['--sparse=always', source, destination]);
}

/** Writes a file into the boot partition's FAT file system (mtools, no mount). */
export function writeBootFile(disk: string, name: string, hostFile: string): void {
  const boot = partitionsOf(disk)[0]!;
  execFileSync('mcopy', ['-o', '-i', `${disk}@@${boot.offset}`, hostFile, `::${name}`]);
}

/** Reads a file from the boot partition's FAT file system. */
export function readBootFile(disk: string, name: string): Buffer {
  const boot = partitionsOf(disk)[0]!;
  return execFileSync('mcopy', ['-n', '-i', `${disk}@@${boot.offset}`, `::${name}`, '-']);
}

/** Writes bytes (a slot image, garbage) at the start of a partition. */
export function writePartition(disk: string, number: number, data: Buffer): void {
  const partition = partitionsOf(disk)[number - 1]!;
  if (data.length > partition.size) throw new Error(`${data.length} bytes do not fit p${number}`);
  const fd = openSync(disk, constants.O_WRONLY);
  try {
    writeSync(fd, data, 0, data.length, partition.offset);
  } finally {
    closeSync(fd);
  }
}
