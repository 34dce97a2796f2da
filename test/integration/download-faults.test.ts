import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FLEET_BOARD } from './fleet.js';
import { partitionSha256, scratchDir } from './images.js';
import { watchOta, type OtaStatus } from './ota-watch.js';
import { QemuDevice, freePort } from './qemu-device.js';
import { prepareScenarioFleet } from './update-scenarios.js';
import { scenario } from './scenario.js';

const MiB = 1 << 20;
// 12 MiB at 1 MiB/s: a download of about 12 s to cut in the middle.
const SLOW_LINK = {
  EDGE_OTA_BANDWIDTH_BYTES_PER_SECOND: String(MiB),
  EDGE_OTA_BANDWIDTH_BURST_BYTES: String(64 * 1024),
  EDGE_OTA_STALL_TIMEOUT_SECONDS: '5',
};

scenario('network cut mid-download: the download resumes where it stopped', 8, async (t, say) => {
  const { fleet, releases } = prepareScenarioFleet(t);
  const { v2, bigDelta } = releases;
  const server = await fleet.startServer(await freePort());
  t.teardown(() => server.stop());
  server.rollout(bigDelta.version);
  const { dir, cleanup } = scratchDir('network-cut');
  t.teardown(cleanup);
  const disk = join(dir, 'disk.img');
  fleet.provisionDisk(v2, disk, { serverPort: server.port, settings: SLOW_LINK });
  const device = await QemuDevice.start({ disk });
  t.teardown(() => device.stop());

  const downloading = (ota: OtaStatus) =>
    ota.status.state === 'downloading' && (ota.status.bytesDone ?? 0) >= 4 * MiB;
  const before = await watchOta(device, downloading, { timeoutMs: 240_000, onEvent: say });
  await device.setLink(false);
  say(`cable out at ${before.status.bytesDone} of ${before.status.bytesTotal} bytes`);
  // What the device had received drains in a few seconds; then nothing comes for longer than
  // the stall timeout, and the agent gives the connection up (TCP alone would wait for good).
  await new Promise((resolve) => setTimeout(resolve, 30_000));
  await device.setLink(true);
  say('cable in');

  let lowest = Infinity;
  await watchOta(
    device,
    (ota) => {
      // (A try starts with 0 bytes in its status until the download says where it resumes.)
      const done = ota.status.state === 'downloading' ? (ota.status.bytesDone ?? 0) : 0;
      if (done > 0) lowest = Math.min(lowest, done);
      return ota.status.state === 'applying';
    },
    { timeoutMs: 180_000, onEvent: say, pollMs: 250 },
  );
  // Applying: the download was whole and matched its signed hash.
  t.true(lowest >= MiB, `the download went back to ${lowest} bytes`);
  t.regex(
    device.console,
    /no data for 5 s: the connection is given up.*download interrupted: resuming/,
  );
});

scenario(
  'a delta tampered with on the server is refused before a byte reaches the standby slot',
  8,
  async (t, say) => {
    const { fleet, releases } = prepareScenarioFleet(t);
    const { v2, bigDelta } = releases;
    const { dir, cleanup } = scratchDir('tampered');
    t.teardown(cleanup);
    // A copy of the repository (hard links: no bytes copied) whose delta has one byte changed.
    const repo = join(dir, 'repo');
    execFileSync('cp', ['-al', fleet.repo, repo]);
    const folder = join(repo, 'targets', FLEET_BOARD, bigDelta.version);
    const delta = readdirSync(folder).find((name) => name.endsWith('.rootfs.from-1.1.0.bsdiff'))!;
    const bytes = readFileSync(join(folder, delta));
    bytes[bytes.length >> 1]! ^= 0x55;
    rmSync(join(folder, delta)); // unlinked first: the shared repository keeps its own copy
    writeFileSync(join(folder, delta), bytes);

    const server = await fleet.startServer(await freePort(), { repo });
    t.teardown(() => server.stop());
    server.rollout(bigDelta.version);
    const disk = join(dir, 'disk.img');
    fleet.provisionDisk(v2, disk, { serverPort: server.port, settings: SLOW_LINK });
    const standbyBefore = await partitionSha256(disk, 3, v2.bytes);
    const device = await QemuDevice.start({ disk });
    const failed = await watchOta(device, (ota) => ota.status.state === 'failed', {
      timeoutMs: 240_000,
      onEvent: say,
    });
    t.regex(failed.status.reason ?? '', /SHA-256 [0-9a-f]{64}, signed [0-9a-f]{64}/);
    const seen = await server.waitForDevice((checkIn) => checkIn.update.state === 'failed', 30_000);
    t.like(seen, {
      version: v2.version,
      update: { state: 'failed', targetVersion: bigDelta.version },
    });
    await device.stop();
    t.is(await partitionSha256(disk, 3, v2.bytes), standbyBefore, 'the standby slot was written');
    t.is(await partitionSha256(disk, 2, v2.bytes), v2.sha256, 'the running slot was written');
  },
);
