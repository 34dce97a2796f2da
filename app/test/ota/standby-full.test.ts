import test from 'ava';
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AbStateStore, sha256OfFile } from '@edge/formats';
import { explainSlotWriteError, SlotWriteError } from '../../src/ota/slot-writer.js';
import {
  bootAgent,
  deviceIdOf,
  deviceRecord,
  makeFileDevice,
  startFleet,
  type Fleet,
} from './fleet.js';
import { seededBytes } from './seeded.js';

// A standby slot that cannot take the image: a partition smaller than it, or a file-backed
// slot on a full filesystem. The update fails with a reason that says so, the server hears
// it, and neither the boot flags nor the running slot change.

const SLOT_BYTES = 4 * 1024 * 1024;

/** A 2 MiB tmpfs to fill, when this process may mount one (root, and a mount namespace that allows it). */
function mountSmallTmpfs(): { path: string } | { reason: string } {
  const path = mkdtempSync(join(tmpdir(), 'edge-full-standby-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', path], { stdio: 'pipe' });
    return { path };
  } catch (error) {
    rmSync(path, { recursive: true, force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    return { reason: stderr || (error as Error).message };
  }
}
const smallFs = mountSmallTmpfs();

const readFileOrNothing = (path: string) => (existsSync(path) ? readFileSync(path) : undefined);

let fleet: Fleet;
const scratchDirs: string[] = [];
test.before(async () => {
  const runtime = seededBytes('runtime', 1024 * 1024);
  const app = seededBytes('app', 256 * 1024);
  fleet = await startFleet({
    slotBytes: SLOT_BYTES,
    releases: [
      { version: '1.0.0', files: { 'usr/lib/edge/runtime.bin': runtime, 'app.mjs': app } },
      {
        version: '1.1.0',
        files: {
          'usr/lib/edge/runtime.bin': runtime,
          'app.mjs': Buffer.concat([app, seededBytes('app 1.1.0', 4096)]),
        },
      },
    ],
  });
  scratchDirs.push(fleet.dir);
});
test.after.always(async () => {
  await fleet?.stop();
  if ('path' in smallFs) {
    execFileSync('umount', [smallFs.path]);
    scratchDirs.push(smallFs.path);
  }
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

/** A device running 1.0.0 from slot a, whose standby slot b is `standby` (made by the caller). */
async function makeDevice(standby: string) {
  const device = await makeFileDevice(fleet, { standby });
  const agent = await bootAgent(fleet, device);
  return {
    agent,
    running: device.slots.a,
    flags: new AbStateStore(device.bootPartition),
    /** Both copies of the A/B state, byte for byte. */
    flagBytes: () =>
      ['abstate1.env', 'abstate2.env'].map((name) =>
        readFileOrNothing(join(device.bootPartition, name)),
      ),
    rebooted: () => existsSync(device.rebootMarker),
    deviceId: () => deviceIdOf(device),
    otaState: () =>
      JSON.parse(readFileSync(join(device.data, 'ota-state.json'), 'utf8')) as {
        deltaRefusedVersions: string[];
      },
  };
}

test.serial(
  'a standby partition smaller than the image: refused before a byte is written',
  async (t) => {
    const standby = join(mkdtempSync(join(tmpdir(), 'edge-standby-')), 'slot-b');
    scratchDirs.push(join(standby, '..'));
    writeFileSync(standby, seededBytes('old standby', SLOT_BYTES / 2));
    const standbyBefore = await sha256OfFile(standby);
    const device = await makeDevice(standby);
    const runningBefore = await sha256OfFile(device.running);
    const flagsBefore = device.flagBytes();

    await device.agent.cycle();

    t.like(device.agent.status, { state: 'failed', targetVersion: '1.1.0' });
    t.regex(device.agent.status.reason ?? '', /the standby slot .* is too small/);
    t.is(await sha256OfFile(standby), standbyBefore, 'the standby slot is untouched');
    t.is(await sha256OfFile(device.running), runningBefore, 'the running slot is untouched');
    t.deepEqual(device.flagBytes(), flagsBefore, 'the boot flags are untouched');
    t.like(await device.flags.read(), { committed: 'a', trial: undefined });
    t.false(device.rebooted());
    const record = await deviceRecord(fleet, await device.deviceId());
    t.like(record.lastCheckIn, { version: '1.0.0', slot: 'a', update: { state: 'failed' } });
    t.regex(JSON.stringify(record.lastCheckIn), /standby slot .* is too small/);
  },
);

const onFullFs = 'path' in smallFs ? test.serial : test.skip;
const skipNote = 'reason' in smallFs ? ` (skipped: cannot mount a tmpfs: ${smallFs.reason})` : '';
onFullFs(
  `a file-backed standby slot on a full filesystem: a clear failure, reported, flags and running slot untouched${skipNote}`,
  async (t) => {
    if (!('path' in smallFs)) return;
    // A sparse file the size of a partition, on 2 MiB of space: writing the image fills it.
    const standby = join(smallFs.path, 'slot-b');
    writeFileSync(standby, '');
    truncateSync(standby, 2 * SLOT_BYTES);
    const device = await makeDevice(standby);
    const runningBefore = await sha256OfFile(device.running);
    const flagsBefore = device.flagBytes();

    await device.agent.cycle();

    t.like(device.agent.status, { state: 'failed', targetVersion: '1.1.0' });
    t.regex(device.agent.status.reason ?? '', /the standby slot .* is full/);
    t.is(await sha256OfFile(device.running), runningBefore, 'the running slot is untouched');
    t.deepEqual(device.flagBytes(), flagsBefore, 'the boot flags are untouched');
    t.like(await device.flags.read(), { committed: 'a', trial: undefined });
    t.false(device.rebooted());
    t.deepEqual(
      device.otaState().deltaRefusedVersions,
      [],
      'a full disk is not the delta’s fault: it is used again at the next try',
    );
    const record = await deviceRecord(fleet, await device.deviceId());
    t.like(record.lastCheckIn, { version: '1.0.0', slot: 'a', update: { state: 'failed' } });
    t.regex(JSON.stringify(record.lastCheckIn), /standby slot .* is full/);
  },
);

test('ENOSPC while writing the standby slot becomes a SlotWriteError naming the full slot', (t) => {
  const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), {
    code: 'ENOSPC',
  });
  const explained = explainSlotWriteError(enospc, '/dev/mmcblk0p3');
  t.true(explained instanceof SlotWriteError);
  t.is(explained.message, 'the standby slot /dev/mmcblk0p3 is full');
  const other = Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
  t.is(explainSlotWriteError(other, '/dev/mmcblk0p3'), other, 'other errors pass as they are');
});
