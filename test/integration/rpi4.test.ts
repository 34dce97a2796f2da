// The Pi 4 SD card that `npm run image` writes, booted on QEMU's raspi4b with its own U-Boot.
// The test copy differs from the shipped card by the test-only edge-test.scr on p1 alone.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { partitionsOf, readBootFile, writePartition } from './disk-image.js';
import {
  builtImages,
  scratchDir,
  writeAbState,
  writeAbStateWithCorruptNewerCopy,
} from './images.js';
import { Rpi4Device } from './rpi4-device.js';
import {
  TEST_SCRIPT,
  abStateByFwPrintenv,
  bootFile,
  bootFiles,
  sameBytes,
  shippedCard,
  slotImageWithFiles,
  testCard,
} from './rpi4-images.js';

const images = builtImages();
// U-Boot reads the kernel at well under 1 MB/s from the emulated card, and TCG runs 4 cores.
const BOOT_MS = 300_000;

async function withDevice<T>(
  disk: string,
  dir: string,
  use: (device: Rpi4Device) => Promise<T>,
): Promise<T> {
  const device = await Rpi4Device.start({ disk, dir });
  try {
    return await use(device);
  } finally {
    await device.stop();
  }
}

test('the shipped card carries no test script; the test copy differs from it by that file alone', (t) => {
  const { dir, cleanup } = scratchDir('rpi4-same');
  t.teardown(cleanup);
  const shipped = shippedCard(images);
  const card = testCard(images, dir);
  t.false(bootFiles(shipped).includes(TEST_SCRIPT));
  t.deepEqual(bootFiles(card), [...bootFiles(shipped), TEST_SCRIPT].sort());
  for (const name of bootFiles(shipped))
    t.true(bootFile(card, name).equals(bootFile(shipped, name)), `p1 ${name}`);
  const partitions = partitionsOf(shipped);
  t.deepEqual(partitionsOf(card), partitions);
  t.true(sameBytes(shipped, card, 0, partitions[0]!.offset), 'MBR and the gap before p1');
  for (const partition of partitions.slice(1))
    t.true(sameBytes(shipped, card, partition.offset, partition.size), `p${partition.number}`);
  // U-Boot's environment on p1 boots at once, whatever the UART receives.
  t.regex(readBootFile(shipped, 'uboot.env').toString('latin1'), /\0bootdelay=-2\0/);
});

test('slot A boots to a ready edge server while noise hits the U-Boot console', async (t) => {
  const { dir, cleanup } = scratchDir('rpi4-boot-a');
  t.teardown(cleanup);
  const card = testCard(images, dir);
  await withDevice(card, dir, async (device) => {
    // Random bytes on U-Boot's UART until the boot script runs: no key may stop autoboot.
    // From U-Boot's first line on: QEMU has put the terminal in raw mode by then.
    await device.waitForConsole(/MMC:/, BOOT_MS);
    const noise = setInterval(() => device.sendNoise(64), 100);
    try {
      await device.waitForConsole(/edge-boot: booting slot a/, BOOT_MS);
    } finally {
      clearInterval(noise);
    }
    t.notRegex(device.console, /Hit any key to stop autoboot/);
    t.notRegex(device.console, /^=> /m);
    // The console reports health (the raspi4b console takes no input yet, and has no network):
    // the edge server logs that it listens, then that the boot slot is settled (it is ready).
    // (Its slot hash would take minutes more: the emulated card reads at under 1 MB/s.)
    await device.waitForConsole(/"msg":"Server listening at http:\/\/127\.0\.0\.1:8080"/, BOOT_MS);
    await device.waitForConsole(/"outcome":"not a trial"[^\n]*"msg":"boot slot settled"/, BOOT_MS);
    const seconds = device.uptimeSeconds;
    t.log(`raspi4b: QEMU start to edge server ready ${seconds.toFixed(1)} s`);
    t.regex(device.console, /edge-boot: booting slot a/);
    t.regex(device.console, /"msg":"memory budget in effect"/);
  });
});

test('a pending upgrade to a slot that cannot boot falls back after the boot limit', async (t) => {
  const { dir, cleanup } = scratchDir('rpi4-fallback');
  t.teardown(cleanup);
  const card = testCard(images, dir);
  // Slot b holds no file system (a write that never completed): U-Boot cannot load it.
  writePartition(card, 3, Buffer.alloc(1 << 20, 0xa5));
  await writeAbState(card, dir, { committed: 'a', trial: 'b', attempts: 0, attemptLimit: 3 });
  await withDevice(card, dir, async (device) => {
    await device.waitForConsole(/slot b did not come up in 3 attempts: back to slot a/, BOOT_MS);
    t.is(device.console.match(/edge-boot: trying slot b, attempt/g)?.length, 3);
    await device.waitForConsole(/rcS: up, slot a/, BOOT_MS);
  });
  const state = abStateByFwPrintenv(card, dir);
  t.like(state, { ab_good: 'a', ab_failed: 'b', ab_tries: '0' });
  t.false('ab_try' in state);
});

test('one copy of the A/B state corrupted: the device boots the slot of the good copy', async (t) => {
  const { dir, cleanup } = scratchDir('rpi4-corrupt');
  t.teardown(cleanup);
  const card = testCard(images, dir);
  writePartition(card, 3, readFileSync(images.slotImage));
  await writeAbStateWithCorruptNewerCopy(card, dir);
  await withDevice(card, dir, async (device) => {
    await device.waitForConsole(/rcS: up, slot b/, BOOT_MS);
    t.regex(device.console, /A\/B state from abstate1\.env: good b/);
  });
});

// An update as the agent leaves it (the standby slot written, then the flags), written from the
// host: the raspi4b console takes no input yet, so the running system cannot be driven to do it.
test('a pending upgrade to a good slot boots it on trial and the edge server commits it', async (t) => {
  const { dir, cleanup } = scratchDir('rpi4-update');
  t.teardown(cleanup);
  const card = testCard(images, dir);
  const release = slotImageWithFiles(images, dir, { '/etc/edge/marker': 'release 2\n' });
  writePartition(card, 3, readFileSync(release));
  await writeAbState(card, dir, { committed: 'a', trial: 'b', attempts: 0, attemptLimit: 3 });
  await withDevice(card, dir, async (device) => {
    await device.waitForConsole(/edge-boot: trying slot b, attempt 1 of 3/, BOOT_MS);
    await device.waitForConsole(/"outcome":"committed"[^\n]*"msg":"boot slot settled"/, BOOT_MS);
  });
  t.like(abStateByFwPrintenv(card, dir), { ab_good: 'b', ab_tries: '0' });
});
