import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { writePartition } from './disk-image.js';
import {
  builtImages,
  freshDisk,
  scratchDir,
  writeAbState,
  writeAbStateWithCorruptNewerCopy,
} from './images.js';
import { QemuDevice } from './qemu-device.js';
import { scenario } from './scenario.js';

const images = builtImages();
const BOOT_TO_READY_MS = 90_000;

interface BootReport {
  slot: string;
  trialBoot: boolean;
  committed: string;
  trial: string | null;
  failedUpgrade: string | null;
}

async function bootReport(device: QemuDevice): Promise<BootReport> {
  const response = await device.waitForHttp('/api/v1/firmware/boot', BOOT_TO_READY_MS);
  return (await response.json()) as BootReport;
}

async function withDevice<T>(
  disk: string,
  use: (device: QemuDevice) => Promise<T>,
  options: { rtcBase?: string } = {},
): Promise<T> {
  const device = await QemuDevice.start({ disk, ...options });
  try {
    return await use(device);
  } finally {
    await device.stop();
  }
}

scenario('slot A boots; the edge server answers with the slot image hash', 6, async (t) => {
  const { dir, cleanup } = scratchDir('boot-a');
  t.teardown(cleanup);
  const disk = freshDisk(images, dir);
  await withDevice(disk, async (device) => {
    const started = performance.now();
    await device.waitForHttp('/readyz', BOOT_TO_READY_MS);
    t.log(
      `QEMU start to edge server ready: ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    const hash = await device.waitForHttp('/api/v1/firmware/hash', 60_000);
    t.deepEqual(await hash.json(), { hash: images.slotSha256 });
    t.like(await bootReport(device), { slot: 'a', trialBoot: false, committed: 'a' });
  });
});

// A trial that panics, or whose edge server never comes up, falls back after the boot limit:
// bad-release.test.ts shows both with the update agent, from a real update.

scenario(
  'a corrupt copy of the A/B state is skipped: the device boots the slot of the good copy',
  6,
  async (t) => {
    const { dir, cleanup } = scratchDir('corrupt-copy');
    t.teardown(cleanup);
    const disk = freshDisk(images, dir);
    writePartition(disk, 3, readFileSync(images.slotImage));
    await writeAbStateWithCorruptNewerCopy(disk, dir);
    await withDevice(disk, async (device) => {
      t.like(await bootReport(device), { slot: 'b', committed: 'b' });
      t.regex(device.console, /A\/B state from abstate1\.env/);
      // Slot a's hash is on record from the build; slot b's, written here, is read at this boot.
      const hash = await device.waitForHttp('/api/v1/firmware/hash', 120_000);
      t.deepEqual(await hash.json(), { hash: images.slotSha256 });
    });
  },
);

scenario(
  'the data partition keeps a file and the clock floor across a reboot and a change of slot',
  6,
  async (t) => {
    const { dir, cleanup } = scratchDir('data');
    t.teardown(cleanup);
    const disk = freshDisk(images, dir);
    writePartition(disk, 3, readFileSync(images.slotImage));
    const epochNow = async (device: QemuDevice) => Number(await device.run('date +%s'));
    // A board whose clock starts in 2001, as a Pi 4 starts in 1970: rcS sets it forward to the
    // release's build time, then to the later time noted on /data.
    const noted = images.sourceDateEpoch + 365 * 86_400;
    await withDevice(
      disk,
      async (device) => {
        await device.openShell(BOOT_TO_READY_MS);
        t.regex(device.console, /edge-clock-floor: clock was behind its floor; set to /);
        t.true((await epochNow(device)) >= images.sourceDateEpoch);
        await device.waitForHttp('/readyz', BOOT_TO_READY_MS);
        // The edge server noted the time once ready.
        t.true(Number(await device.run('stat -c %Y /data/edge/clock')) >= images.sourceDateEpoch);
        await device.run(
          `echo kept-across-updates > /data/keep.txt && touch -d @${noted} /data/edge/clock && sync`,
        );
        device.type('reboot');
        await device.waitForConsole(
          /edge-boot: booting slot a/,
          60_000,
          device.console.length - 200,
        );
        await device.waitForConsole(
          /rcS: up, slot a[\s\S]*Please press Enter/,
          BOOT_TO_READY_MS,
          device.console.lastIndexOf('edge-boot: booting'),
        );
        await device.openShell(BOOT_TO_READY_MS);
        t.is((await device.run('cat /data/keep.txt')).trim(), 'kept-across-updates');
        // The shutdown and the stopping edge server left the later note alone.
        t.true((await epochNow(device)) >= noted);
      },
      { rtcBase: '2001-01-01' },
    );
    // Slot b on trial: it boots, the edge server commits it, and /data is the same.
    await writeAbState(disk, dir, { committed: 'a', trial: 'b', attempts: 0, attemptLimit: 3 });
    await withDevice(disk, async (device) => {
      const report = await bootReport(device);
      t.like(report, { slot: 'b', trialBoot: true });
      await device.openShell(BOOT_TO_READY_MS);
      t.is((await device.run('cat /data/keep.txt')).trim(), 'kept-across-updates');
      t.like(await bootReport(device), { slot: 'b', committed: 'b', trial: null });
    });
  },
);
