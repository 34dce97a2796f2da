import test from 'ava';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { AbStateStore, sha256OfFile } from '@edge/formats';
import {
  bootAgent,
  deviceIdOf,
  deviceRecord,
  makeFileDevice,
  startFleet,
  type Fleet,
  type FileDevice,
} from './fleet.js';
import { seededBytes } from './seeded.js';
import { SlotHashRecords } from '../../src/slot-hash-records.js';
import { afterFailure, waitsForRetry, type UpdateRetry } from '../../src/ota/update-retry.js';

// The update agent on file-backed slots against the real update server on 127.0.0.1, set up
// and served by ota-server's own command line, run in this process (its binary has its own
// test): one fleet for the file, a new device for each test.
const SLOT_BYTES = 16 * 1024 * 1024;

/** A device that U-Boot boots from `slot`; the agent's health deadline is short. */
function boot(
  device: FileDevice,
  slot: 'a' | 'b',
  options: { trial?: boolean; env?: Record<string, string> } = {},
) {
  return bootAgent(fleet, device, {
    slot,
    trial: options.trial,
    env: { EDGE_OTA_HEALTH_DEADLINE_SECONDS: '10', ...options.env },
  });
}

// One fleet (repository, two releases and their delta, server, roll-out) for the file's tests;
// they run serially because one of them serves a tampered delta while it runs.
let fleet: Fleet;
test.before(async () => {
  // The same 4 MiB of runtime in every release; the app changes by 4 KiB inserted.
  const runtime = seededBytes('runtime', 4 * 1024 * 1024);
  const app1 = seededBytes('app', 300 * 1024);
  const app2 = Buffer.concat([
    app1.subarray(0, 100_000),
    seededBytes('app 1.1.0', 4096),
    app1.subarray(100_000),
  ]);
  const release = (version: string, app: Buffer) => ({
    version,
    files: { 'usr/lib/edge/edge-server.mjs': app, 'usr/lib/edge/runtime.bin': runtime },
  });
  fleet = await startFleet({
    slotBytes: SLOT_BYTES,
    releases: [release('1.0.0', app1), release('1.1.0', app2)],
  });
});
test.after.always(async () => {
  await fleet?.stop();
  if (fleet) rmSync(fleet.dir, { recursive: true, force: true });
});

test.serial(
  'the device updates by delta into the standby slot, reboots, and commits after the reboot',
  async (t) => {
    const device = await makeFileDevice(fleet);
    // What slot b held before: a record the agent must drop when it writes the slot.
    const records = new SlotHashRecords(device.data);
    await records.remember(device.slots.b, { sha256: 'ab'.repeat(32), length: SLOT_BYTES });

    const agent = await boot(device, 'a');
    await agent.cycle();
    t.true(existsSync(device.rebootMarker), 'the reboot command ran');
    t.is(await sha256OfFile(device.slots.b, SLOT_BYTES), fleet.images['1.1.0']!.sha256);
    // Verified after writing: the next boot takes slot b's hash from the record.
    t.deepEqual(await records.lookup(device.slots.b), {
      sha256: fleet.images['1.1.0']!.sha256,
      length: SLOT_BYTES,
    });
    t.like(await new AbStateStore(device.bootPartition).read(), {
      committed: 'a',
      trial: 'b',
      attempts: 0,
    });
    t.like(agent.status, { state: 'rebooting', targetVersion: '1.1.0' });
    const ota = JSON.parse(readFileSync(join(device.data, 'ota-state.json'), 'utf8')) as {
      pending: { deltaTarget?: string };
    };
    t.is(
      ota.pending.deltaTarget,
      'qemu/1.1.0/rootfs.from-1.0.0.bsdiff',
      'the delta, not the full image',
    );
    t.deepEqual(readdirSync(join(device.data, 'downloads')), [], 'downloads cleaned up');

    // U-Boot boots slot b as a trial; the agent finds itself healthy and commits.
    const afterReboot = await boot(device, 'b', { trial: true });
    await afterReboot.load();
    await afterReboot.settleAfterBoot();
    t.like(await new AbStateStore(device.bootPartition).read(), {
      committed: 'b',
      trial: undefined,
    });
    t.like(afterReboot.status, { state: 'committed', targetVersion: '1.1.0' });
    await afterReboot.cycle();
    const record = await deviceRecord(fleet, await deviceIdOf(device));
    t.like(record.lastCheckIn, { version: '1.1.0', slot: 'b', update: { state: 'committed' } });
  },
);

test.serial(
  'a new slot that does not come up: the fallback is reported and the release not tried again',
  async (t) => {
    const device = await makeFileDevice(fleet);
    await (await boot(device, 'a')).cycle();
    t.true(existsSync(device.rebootMarker));

    // U-Boot tried slot b three times, then went back to a and recorded the failure.
    const store = new AbStateStore(device.bootPartition);
    await store.write({ committed: 'a', attempts: 0, attemptLimit: 3, failedUpgrade: 'b' });
    rmSync(device.rebootMarker);
    const afterFallback = await boot(device, 'a');
    await afterFallback.load();
    await afterFallback.settleAfterBoot();
    t.like(afterFallback.status, { state: 'rolled-back', targetVersion: '1.1.0' });
    t.regex(afterFallback.status.reason ?? '', /slot b did not come up in 3 attempts/);
    t.deepEqual(afterFallback.failedVersions, ['1.1.0']);

    await afterFallback.cycle();
    t.false(existsSync(device.rebootMarker), 'the failed release is not installed again');
    const record = await deviceRecord(fleet, await deviceIdOf(device));
    t.regex(JSON.stringify(record), /did not come up/);
    t.like(record.lastCheckIn, { update: { state: 'rolled-back', targetVersion: '1.1.0' } });
  },
);

test.serial(
  'a tampered delta is refused before a byte reaches the standby slot; the full image follows',
  async (t) => {
    const device = await makeFileDevice(fleet);
    const deltaDir = join(fleet.repo, 'targets', 'qemu', '1.1.0');
    const deltaFile = readdirSync(deltaDir).find((name) => name.endsWith('.bsdiff'))!;
    const original = readFileSync(join(deltaDir, deltaFile));
    const delta = Buffer.from(original);
    delta.writeUInt8(delta.readUInt8(delta.length - 100) ^ 0x01, delta.length - 100);
    writeFileSync(join(deltaDir, deltaFile), delta);
    // The fleet is shared: the served delta is whole again for whatever runs next.
    t.teardown(() => writeFileSync(join(deltaDir, deltaFile), original));
    const standbyBefore = await sha256OfFile(device.slots.b);

    const agent = await boot(device, 'a');
    await agent.cycle();
    t.like(agent.status, { state: 'failed', targetVersion: '1.1.0' });
    t.regex(agent.status.reason ?? '', /SHA-256/);
    t.is(await sha256OfFile(device.slots.b), standbyBefore, 'the standby slot is untouched');
    t.false(existsSync(device.rebootMarker));
    t.like(await new AbStateStore(device.bootPartition).read(), {
      committed: 'a',
      trial: undefined,
    });

    // The next check-in takes the full image instead, and the update goes through.
    await agent.cycle();
    t.true(existsSync(device.rebootMarker));
    t.is(await sha256OfFile(device.slots.b, SLOT_BYTES), fleet.images['1.1.0']!.sha256);
  },
);

test.serial(
  'stopped mid-download, the agent stops at once and reports no failure; the next start resumes, past an older fallback',
  async (t) => {
    const device = await makeFileDevice(fleet);
    // An earlier update into slot b fell back: the bootloader's failedUpgrade still names b.
    await new AbStateStore(device.bootPartition).write({
      committed: 'a',
      attempts: 0,
      attemptLimit: 3,
      failedUpgrade: 'b',
    });
    const agent = await boot(device, 'a', {
      env: {
        EDGE_OTA_BANDWIDTH_BYTES_PER_SECOND: '2048',
        EDGE_OTA_BANDWIDTH_BURST_BYTES: '2048',
      },
    });
    await agent.start();
    while (agent.status.state !== 'downloading') await sleep(20);
    await sleep(300);
    const stopping = performance.now();
    await agent.stop();
    t.true(performance.now() - stopping < 1000, 'the download stopped at once');
    t.like(agent.status, { state: 'downloading', targetVersion: '1.1.0' });
    const downloads = join(device.data, 'downloads');
    t.true(
      readdirSync(downloads).some((name) => name.endsWith('.part')),
      'the partial is kept',
    );
    t.false(existsSync(device.rebootMarker));
    // Forgotten as the slot's rewrite began: a cut before the new trial is set cannot be read
    // as this update's failure.
    t.is((await new AbStateStore(device.bootPartition).read()).failedUpgrade, undefined);

    // The next start: the older fallback is not taken for this update's; the download resumes.
    const next = await boot(device, 'a');
    await next.load();
    await next.settleAfterBoot();
    t.deepEqual(next.failedVersions, []);
    t.like(next.status, { state: 'downloading', targetVersion: '1.1.0' });
    await next.cycle();
    t.true(existsSync(device.rebootMarker));
    t.is(await sha256OfFile(device.slots.b, SLOT_BYTES), fleet.images['1.1.0']!.sha256);
  },
);

test.serial(
  'a release that keeps failing waits before its next try, across a restart, then is tried again',
  async (t) => {
    const device = await makeFileDevice(fleet);
    // The delta and the full image both broken on the server (the fleet is shared: mended after).
    const releaseDir = join(fleet.repo, 'targets', 'qemu', '1.1.0');
    const originals = new Map(
      readdirSync(releaseDir).map((name) => [
        join(releaseDir, name),
        readFileSync(join(releaseDir, name)),
      ]),
    );
    const mend = () => originals.forEach((bytes, path) => writeFileSync(path, bytes));
    t.teardown(mend);
    for (const [path, bytes] of originals) {
      const broken = Buffer.from(bytes);
      broken[broken.length - 100]! ^= 0x01;
      writeFileSync(path, broken);
    }
    const statePath = join(device.data, 'ota-state.json');
    const retry = () =>
      (
        JSON.parse(readFileSync(statePath, 'utf8')) as {
          retry?: { version: string; failures: number; notBefore: string };
        }
      ).retry;

    const agent = await boot(device, 'a');
    await agent.cycle(); // the delta fails: tried again at the next check-in, as a full image
    t.like(retry(), { version: '1.1.0', failures: 1 });
    await agent.cycle(); // the full image fails too: the next try waits a check-in interval
    t.like(agent.status, { state: 'failed', targetVersion: '1.1.0' });
    t.like(retry(), { version: '1.1.0', failures: 2 });
    t.true(Date.parse(retry()!.notBefore) > Date.now());

    // Mended on the server, but this device waits its time, even after a restart.
    mend();
    const restarted = await boot(device, 'a');
    await restarted.load();
    await restarted.cycle();
    t.false(existsSync(device.rebootMarker), 'not tried while it waits');
    t.like(retry(), { failures: 2 });

    // Its time has come: the update goes through and the record is gone.
    const state = JSON.parse(readFileSync(statePath, 'utf8')) as Record<string, unknown>;
    writeFileSync(
      statePath,
      JSON.stringify({ ...state, retry: { ...retry(), notBefore: new Date(0).toISOString() } }),
    );
    const later = await boot(device, 'a');
    await later.load();
    await later.cycle();
    t.true(existsSync(device.rebootMarker));
    t.is(retry(), undefined);
  },
);

test('the wait doubles with each consecutive failure of a release, up to 6 hours', (t) => {
  const now = new Date('2026-01-01T00:00:00Z');
  const waits: number[] = [];
  let retry: UpdateRetry | undefined;
  for (let failure = 1; failure <= 12; failure++) {
    retry = afterFailure(retry, '1.1.0', 60, now);
    waits.push((Date.parse(retry.notBefore) - now.getTime()) / 1000);
  }
  t.deepEqual(waits, [0, 60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600]);
  t.true(waitsForRetry(retry, '1.1.0', now));
  t.false(waitsForRetry(retry, '1.2.0', now), 'another release does not wait');
  t.like(afterFailure(retry, '1.2.0', 60, now), { version: '1.2.0', failures: 1 });
});
