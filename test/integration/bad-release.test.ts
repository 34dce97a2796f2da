import test from 'ava';
import { join } from 'node:path';
import { BASE_RELEASES, scenarioFleet, timeline } from './update-scenarios.js';
import { scratchDir, writeAbState } from './images.js';
import { statesDuring, watchOta, type OtaStatus } from './ota-watch.js';
import { QemuDevice, freePort } from './qemu-device.js';

// v3 replaces the edge server by one that exits at once: the slot boots but is never healthy.
const UNHEALTHY = {
  version: '1.2.0',
  deltas: 1,
  derived: {
    from: '1.1.0',
    edits: ['rm /usr/lib/edge/edge-server.mjs', 'write crash.mjs /usr/lib/edge/edge-server.mjs'],
    files: { 'crash.mjs': "console.error('this release is broken'); process.exit(3);\n" },
  },
};
// v3' has an initramfs with no /init: its kernel panics, and panic=5 reboots.
const PANICS = {
  version: '1.2.1',
  deltas: 2,
  derived: {
    from: '1.1.0',
    edits: ['rm /boot/initrd.img', 'write empty.cpio /boot/initrd.img'],
    files: { 'empty.cpio': Buffer.alloc(512) },
  },
};
const ATTEMPT_LIMIT = 2;

test('bad releases: an unhealthy v3 and a panicking v3′ fall back to v2, are reported, and are not tried again', async (t) => {
  const say = timeline(t);
  const fleet = scenarioFleet(t);
  const releases = fleet.prepare([...BASE_RELEASES, UNHEALTHY, PANICS]);
  const server = await fleet.startServer(await freePort());
  t.teardown(() => server.stop());
  const { dir, cleanup } = scratchDir('bad-release');
  t.teardown(cleanup);
  const disk = join(dir, 'disk.img');
  fleet.provisionDisk(releases['1.1.0']!, disk, {
    serverPort: server.port,
    files: { '/edge/trial-deadline-seconds': '10\n' },
  });
  await writeAbState(disk, dir, { committed: 'a', attempts: 0, attemptLimit: ATTEMPT_LIMIT });
  const device = await QemuDevice.start({ disk });
  t.teardown(() => device.stop());
  await device.waitForHttp('/readyz', 120_000);
  say('v2 up');

  const failedWith = (version: string) => (ota: OtaStatus) =>
    ota.status.state === 'failed' && ota.status.targetVersion === version;
  for (const [release, sign] of [
    [UNHEALTHY, /edge-trial-watchdog: slot not committed within \d+s: rebooting/],
    [PANICS, /Kernel panic/],
  ] as const) {
    const from = device.console.length;
    server.rollout(release.version);
    say(`roll-out of ${release.version}`);
    const ota = await watchOta(device, failedWith(release.version), {
      timeoutMs: 360_000,
      onEvent: say,
    });
    const printed = device.console.slice(from);
    t.is(printed.match(/edge-boot: trying slot b, attempt/g)?.length, ATTEMPT_LIMIT);
    t.regex(printed, sign);
    t.regex(
      printed,
      new RegExp(`slot b did not come up in ${ATTEMPT_LIMIT} attempts: back to slot a`),
    );
    t.regex(ota.status.reason ?? '', /slot b did not come up in 2 attempts/);
    t.true(ota.failedVersions.includes(release.version));
    const boot = (await (
      await device.waitForHttp('/api/v1/firmware/boot', 30_000)
    ).json()) as object;
    t.like(boot, { slot: 'a', committed: 'a', trial: null, failedUpgrade: 'b' });
    const seen = await server.waitForDevice((checkIn) => checkIn.update.state === 'failed', 30_000);
    t.like(seen, {
      version: '1.1.0',
      firmwareHash: releases['1.1.0']!.sha256,
      update: { state: 'failed', targetVersion: release.version },
    });
    // Three more check-ins: the failed release stays failed, nothing is fetched for it again.
    t.deepEqual(
      [...(await statesDuring(device, 16_000))],
      ['failed'],
      `${release.version} tried again`,
    );
    say(`${release.version} failed, reported and left alone`);
  }
});
