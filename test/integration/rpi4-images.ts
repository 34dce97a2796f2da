import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, openSync, readSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { copyDisk, partitionsOf, readBootFile, writeBootFile } from './disk-image.js';
import type { BuiltImages } from './images.js';

/** The Pi's DT edits for QEMU: a test-only script that boot.scr runs when p1 carries it. */
export const TEST_SCRIPT = 'edge-test.scr';
const TEST_SCRIPT_SOURCE = fileURLToPath(new URL('./rpi4-qemu-dt.cmd', import.meta.url));

// QEMU takes SD cards of a power-of-two size only; real cards are larger than the image too.
const CARD_BYTES = 2 * 1024 ** 3;

/** The SD card image `npm run image` wrote for the Pi 4. */
export function shippedCard(images: BuiltImages): string {
  return join(images.dir, 'rpi4-sdcard.img');
}

/**
 * A test copy of a shipped card: the same bytes, grown to a card's size (past the last
 * partition), and the test-only edge-test.scr on p1.
 */
export function testCard(shipped: string, dir: string): string {
  const card = join(dir, 'sdcard.img');
  copyDisk(shipped, card);
  truncateSync(card, CARD_BYTES);
  const script = join(dir, TEST_SCRIPT);
  execFileSync(
    'mkimage',
    ['-T', 'script', '-A', 'arm64', '-C', 'none', '-n', 'edge test'].concat([
      '-d',
      TEST_SCRIPT_SOURCE,
      script,
    ]),
    { stdio: 'pipe' },
  );
  writeBootFile(card, TEST_SCRIPT, script);
  return card;
}

/** The names of the files on a card's boot partition (mtools). */
export function bootFiles(disk: string): string[] {
  const boot = partitionsOf(disk)[0]!;
  return execFileSync('mdir', ['-b', '-i', `${disk}@@${boot.offset}`, '::'], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((line) => line.replace(/^::\//, ''))
    .sort();
}

/** A file of a card's boot partition, however big (start4.elf is 2 MiB). */
export function bootFile(disk: string, name: string): Buffer {
  const boot = partitionsOf(disk)[0]!;
  return execFileSync('mcopy', ['-n', '-i', `${disk}@@${boot.offset}`, `::${name}`, '-'], {
    maxBuffer: 64 * 1024 ** 2,
  });
}

/** Whether two disks hold the same bytes over a range (compared in 1 MiB blocks). */
export function sameBytes(a: string, b: string, offset: number, length: number): boolean {
  const [fa, fb] = [openSync(a, 'r'), openSync(b, 'r')];
  try {
    const [ba, bb] = [Buffer.alloc(1 << 20), Buffer.alloc(1 << 20)];
    for (let done = 0; done < length;) {
      const size = Math.min(ba.length, length - done);
      readSync(fa, ba, 0, size, offset + done);
      readSync(fb, bb, 0, size, offset + done);
      if (!ba.subarray(0, size).equals(bb.subarray(0, size))) return false;
      done += size;
    }
    return true;
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

/**
 * The A/B state on a card as stock `fw_printenv` (libubootenv) reads it: each copy through its
 * own config, the valid one with the higher ab_seq being current.
 */
export function abStateByFwPrintenv(disk: string, dir: string): Record<string, string> {
  let current: Record<string, string> | undefined;
  for (const copy of [1, 2]) {
    const file = join(dir, `read-abstate${copy}.env`);
    writeFileSync(file, readBootFile(disk, `abstate${copy}.env`));
    const config = join(dir, `fw_env-${copy}.config`);
    writeFileSync(config, `${file} 0x0 0x1000\n`);
    const printed = spawnSync('/usr/bin/fw_printenv', ['-c', config], { encoding: 'utf8' });
    if (printed.status !== 0 || /bad crc/i.test(printed.stderr)) continue;
    const vars = Object.fromEntries(
      printed.stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    if (!current || parseInt(vars.ab_seq ?? '0', 16) > parseInt(current.ab_seq ?? '0', 16))
      current = vars;
  }
  if (!current) throw new Error(`fw_printenv reads no valid A/B state copy on ${disk}`);
  return current;
}
