import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AbStateStore, RedundantEnvFile, abStateToEnv, type AbState } from '@edge/formats';
import { copyDisk, partitionsOf, readBootFile, writeBootFile } from './disk-image.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface BuiltImages {
  version: string;
  dir: string;
  slotImage: string;
  slotSha256: string;
  qemuDisk: string;
  /** The build's SOURCE_DATE_EPOCH: every file's mtime in the slot, and the device's clock floor. */
  sourceDateEpoch: number;
}

/** The images `scripts/build-image.sh` made for the project's version (qemu-test.sh builds them first). */
export function builtImages(version = projectVersion()): BuiltImages {
  const dir = join(process.env.EDGE_OUT ?? join(ROOT, 'out'), version);
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as {
    slotImage: { sha256: string };
    sourceDateEpoch: number;
  };
  return {
    version,
    dir,
    slotImage: join(dir, 'rootfs.ext4'),
    slotSha256: manifest.slotImage.sha256,
    qemuDisk: join(dir, 'qemu-disk.img'),
    sourceDateEpoch: manifest.sourceDateEpoch,
  };
}

function projectVersion(): string {
  return (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string })
    .version;
}

/** A scratch folder for one scenario, removed by `cleanup`. */
export function scratchDir(name: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `edge-${name}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A fresh copy of the QEMU disk. */
export function freshDisk(images: BuiltImages, dir: string): string {
  const disk = join(dir, 'disk.img');
  copyDisk(images.qemuDisk, disk);
  return disk;
}

/**
 * Writes an A/B state into both copies on the disk's boot partition, through the project's
 * codec (copy 2 ends up current, copy 1 one save older).
 */
export async function writeAbState(disk: string, dir: string, state: AbState): Promise<void> {
  const files = new RedundantEnvFile([join(dir, 'abstate1.env'), join(dir, 'abstate2.env')]);
  await files.write(abStateToEnv(state));
  await files.write(abStateToEnv(state));
  writeBootFile(disk, 'abstate1.env', files.paths[0]);
  writeBootFile(disk, 'abstate2.env', files.paths[1]);
}

/**
 * Writes the A/B state with one copy corrupted: copy 1 says slot b; copy 2, one save newer,
 * says slot a but has a bad CRC, so a boot must take copy 1's slot b.
 */
export async function writeAbStateWithCorruptNewerCopy(disk: string, dir: string): Promise<void> {
  const copies = new RedundantEnvFile([join(dir, 'abstate1.env'), join(dir, 'abstate2.env')]);
  await copies.write(abStateToEnv({ committed: 'b', attempts: 0, attemptLimit: 3 }));
  await copies.write(abStateToEnv({ committed: 'a', attempts: 0, attemptLimit: 3 }));
  const corrupt = readFileSync(copies.paths[1]);
  corrupt.writeUInt8(corrupt.readUInt8(100) ^ 0xff, 100);
  writeFileSync(copies.paths[1], corrupt);
  writeBootFile(disk, 'abstate1.env', copies.paths[0]);
  writeBootFile(disk, 'abstate2.env', copies.paths[1]);
}

/**
 * Writes files into the data partition (p4) of a disk image with debugfs: a test's settings
 * for the device, put in place before it boots.
 */
export function writeDataFiles(disk: string, dir: string, files: Record<string, string>): void {
  const data = partitionsOf(disk)[3]!;
  const commands: string[] = [];
  for (const [path, content] of Object.entries(files)) {
    const host = join(dir, `data-file-${commands.length}`);
    writeFileSync(host, content);
    for (const folder of parentFolders(path)) commands.push(`mkdir ${folder}`);
    commands.push(`rm ${path}`, `write ${host} ${path}`);
  }
  writeFileSync(join(dir, 'data.debugfs'), `${commands.join('\n')}\n`);
  // e2fsprogs opens a file system inside a disk image at an offset: no copy, no mount.
  execFileSync(
    'debugfs',
    ['-w', '-f', join(dir, 'data.debugfs'), `${disk}?offset=${data.offset}`],
    {
      stdio: 'pipe',
    },
  );
}

function parentFolders(path: string): string[] {
  const parts = path.split('/').filter(Boolean).slice(0, -1);
  return parts.map((_, index) => `/${parts.slice(0, index + 1).join('/')}`);
}

/** The A/B state on a disk's boot partition, read with the project's codec. */
export async function readAbState(disk: string, dir: string): Promise<AbState> {
  const folder = mkdtempSync(join(dir, 'abstate-'));
  try {
    for (const name of ['abstate1.env', 'abstate2.env']) {
      writeFileSync(join(folder, name), readBootFile(disk, name));
    }
    return await new AbStateStore(folder).read();
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

/** SHA-256 of the first `length` bytes of a partition: the slot image written into it. */
export async function partitionSha256(
  disk: string,
  number: number,
  length: number,
): Promise<string> {
  const { offset } = partitionsOf(disk)[number - 1]!;
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(disk, { start: offset, end: offset + length - 1 })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest('hex');
}

/** A file of the data partition (p4), read with debugfs; undefined when it is not there. */
export function readDataFile(disk: string, path: string): string | undefined {
  const data = partitionsOf(disk)[3]!;
  try {
    return execFileSync('debugfs', ['-R', `cat ${path}`, `${disk}?offset=${data.offset}`], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch {
    return undefined;
  }
}

/**
 * A copy of a slot image changed with debugfs (no mount): `edits` are debugfs commands,
 * and `files` are written to the host first so the commands can `write` them.
 */
export function editedSlotImage(
  images: BuiltImages,
  dir: string,
  name: string,
  edits: string[],
  files: Record<string, string | Buffer> = {},
): string {
  const image = join(dir, `${name}.ext4`);
  copyDisk(images.slotImage, image);
  for (const [file, content] of Object.entries(files)) writeFileSync(join(dir, file), content);
  const commands = join(dir, `${name}.debugfs`);
  writeFileSync(commands, `${edits.join('\n')}\n`);
  execFileSync('debugfs', ['-w', '-f', commands, image], { cwd: dir, stdio: 'pipe' });
  return image;
}
