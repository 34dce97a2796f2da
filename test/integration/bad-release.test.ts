import { join } from 'node:path';
import { RELEASES, prepareScenarioFleet } from './update-scenarios.js';
import { scratchDir, writeAbState } from './images.js';
import { statesDuring, watchOta, type OtaStatus } from './ota-watch.js';
import { QemuDevice, freePort } from './qemu-device.js';
import { scenario } from './scenario.js';

const ATTEMPT_LIMIT = 2;

scenario(
  'bad releases: an unhealthy v3 and a panicking v3′ fall back to v2, are reported, and are not tried again',
  25,
  async (t, say) => {
    const { fleet, releases } = prepareScenarioFleet(t);
    const v2 = releases.v2;
    const server = await fleet.startServer(await freePort());
    t.teardown(() => server.stop());
    const { dir, cleanup } = scratchDir('bad-release');
    t.teardown(cleanup);
    const disk = join(dir, 'disk.img');
    fleet.provisionDisk(v2, disk, {
      serverPort: server.port,
      files: { '/edge/trial-deadline-seconds': '10\n' },
    });
    await writeAbState(disk, dir, { committed: 'a', attempts: 0, attemptLimit: ATTEMPT_LIMIT });
    const device = await QemuDevice.start({ disk });
    t.teardown(() => device.stop());
    await device.waitForHttp('/readyz', 120_000);
    say('v2 up');

    const rolledBack = (version: string) => (ota: OtaStatus) =>
      ota.status.state === 'rolled-back' && ota.status.targetVersion === version;
    for (const [release, sign] of [
      [RELEASES.unhealthy, /edge-trial-watchdog: slot not committed within \d+s: rebooting/],
      [RELEASES.panics, /Kernel panic/],
    ] as const) {
      const from = device.console.length;
      server.rollout(release.version);
      say(`roll-out of ${release.version}`);
      const ota = await watchOta(device, rolledBack(release.version), {
        timeoutMs: 600_000,
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
      const seen = await server.waitForDevice(
        (checkIn) => checkIn.update.state === 'rolled-back',
        30_000,
      );
      t.like(seen, {
        version: v2.version,
        firmwareHash: v2.sha256,
        update: { state: 'rolled-back', targetVersion: release.version },
      });
      // Three more check-ins: the failed release stays failed, nothing is fetched for it again.
      t.deepEqual(
        [...(await statesDuring(device, 16_000))],
        ['rolled-back'],
        `${release.version} tried again`,
      );
      say(`${release.version} failed, reported and left alone`);
    }
  },
);
