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
import { freePort } from './qemu-device.js';
import { watchOta } from './ota-watch.js';
import { Rpi4Device } from './rpi4-device.js';
import {
  TEST_SCRIPT,
  abStateByFwPrintenv,
  bootFile,
  bootFiles,
  sameBytes,
  shippedCard,
  testCard,
} from './rpi4-images.js';
import { RPI4_BOARD, prepareScenarioFleet } from './update-scenarios.js';

const images = builtImages();
// U-Boot reads the kernel at well under 1 MB/s from the emulated card, and TCG runs 4 cores.
const BOOT_MS = 300_000;
// The card reads and writes at about 1 MB/s under emulation: each pass over a 256 MiB slot
// (the running slot's hash, writing the standby, reading it back) takes minutes.
const UPDATE_MS = 1_200_000;

async function withDevice<T>(
  disk: string,
  dir: string,
  hostPort: number | undefined,
  use: (device: Rpi4Device) => Promise<T>,
): Promise<T> {
  const device = await Rpi4Device.start({ disk, dir, hostPort });
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
  const card = testCard(shippedCard(images), dir);
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
  const card = testCard(shippedCard(images), dir);
  await withDevice(card, dir, undefined, async (device) => {
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
    // The console reports health: the edge server logs that it listens, then that the boot
    // slot is settled (it is ready).
    await device.waitForConsole(/"msg":"Server listening at http:\/\/127\.0\.0\.1:8080"/, BOOT_MS);
    await device.waitForConsole(/"outcome":"not a trial"[^\n]*"msg":"boot slot settled"/, BOOT_MS);
    const seconds = device.uptimeSeconds;
    t.log(`raspi4b: QEMU start to edge server ready ${seconds.toFixed(1)} s`);
    t.regex(device.console, /edge-boot: booting slot a/);
    t.regex(device.console, /"msg":"memory budget in effect"/);
    // What the boot read from the card: U-Boot's loads (it prints each), then Linux's (the
    // block device's sectors read, field 3 of its stat), up to the edge server being ready.
    const uboot = [...device.console.matchAll(/(\d+) bytes read in/g)].reduce(
      (sum, match) => sum + Number(match[1]),
      0,
    );
    await device.shell.open(BOOT_MS);
    const stat = await device.shell.run('cat /sys/block/mmcblk*/stat', BOOT_MS);
    const linux = stat
      .trim()
      .split('\n')
      .reduce((sum, line) => sum + Number(line.trim().split(/\s+/)[2]) * 512, 0);
    t.true(uboot > 10e6 && linux > 0, `U-Boot ${uboot} B, Linux ${linux} B`);
    t.log(
      `raspi4b: SD card read during boot: U-Boot ${(uboot / 1e6).toFixed(1)} MB, Linux ${(linux / 1e6).toFixed(1)} MB`,
    );
  });
});

test('a pending upgrade to a slot that cannot boot falls back after the boot limit', async (t) => {
  const { dir, cleanup } = scratchDir('rpi4-fallback');
  t.teardown(cleanup);
  const card = testCard(shippedCard(images), dir);
  // Slot b holds no file system (a write that never completed): U-Boot cannot load it.
  writePartition(card, 3, Buffer.alloc(1 << 20, 0xa5));
  await writeAbState(card, dir, { committed: 'a', trial: 'b', attempts: 0, attemptLimit: 3 });
  await withDevice(card, dir, undefined, async (device) => {
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
  const card = testCard(shippedCard(images), dir);
  writePartition(card, 3, readFileSync(images.slotImage));
  await writeAbStateWithCorruptNewerCopy(card, dir);
  await withDevice(card, dir, undefined, async (device) => {
    await device.waitForConsole(/rcS: up, slot b/, BOOT_MS);
    t.regex(device.console, /A\/B state from abstate1\.env: good b/);
  });
});

// The whole update on the Pi 4 card, done by the running system: the agent checks in over the
// network (a USB Ethernet adapter on QEMU's DWC2), downloads the delta, writes the standby slot
// on the SD card, sets the flags, reboots; U-Boot boots the slot on trial and the agent commits.
test('an update from the update server, applied by the running system, boots and commits', async (t) => {
  const { dir, cleanup } = scratchDir('rpi4-update');
  t.teardown(cleanup);
  const { fleet, releases } = prepareScenarioFleet(t);
  const server = await fleet.startServer(await freePort());
  t.teardown(() => server.stop());
  const card = testCard(releases.v1.rpi4Card!, dir);
  // A slow device's settings: the emulated card reads at about 1 MB/s, so the new slot's hash
  // (needed for the check-in that proves it healthy) takes minutes, not the Pi's seconds.
  fleet.provision(card, {
    serverPort: server.port,
    settings: { EDGE_OTA_HEALTH_DEADLINE_SECONDS: '1200' },
    files: { '/edge/trial-deadline-seconds': '1200\n' },
  });
  server.rollout(releases.v2.version, 100, RPI4_BOARD);
  const started = performance.now();
  await withDevice(card, dir, await freePort(), async (device) => {
    await watchOta(
      device,
      ({ status }) => status.state === 'committed' && status.targetVersion === releases.v2.version,
      {
        timeoutMs: UPDATE_MS,
        pollMs: 2000,
        onEvent: (line) => t.log(`${device.uptimeSeconds.toFixed(0).padStart(4)} s  ${line}`),
      },
    );
    const committed = await server.waitForDevice(
      (checkIn) => checkIn.update.state === 'committed',
      BOOT_MS,
      RPI4_BOARD,
    );
    t.like(committed, { version: releases.v2.version, slot: 'b' });
    t.is(committed.firmwareHash, releases.v2.sha256);
    await device.shell.open(BOOT_MS);
    await device.shell.run('sync', BOOT_MS);
  });
  t.log(`raspi4b: update v1 -> v2 took ${((performance.now() - started) / 1000).toFixed(0)} s`);
  t.like(abStateByFwPrintenv(card, dir), { ab_good: 'b', ab_tries: '0' });
  t.false('ab_try' in abStateByFwPrintenv(card, dir));
});
