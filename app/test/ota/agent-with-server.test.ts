import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { AbStateStore, sha256OfFile } from '@edge/formats';
import { runCli } from '@edge/ota-server';
import { freePort } from '../../../bench/lib/http-load.js';
import { BootState } from '../../src/boot-state.js';
import { loadConfig } from '../../src/config.js';
import { FirmwareHash } from '../../src/firmware-hash.js';
import { bandwidthBucket, createUpdateAgent } from '../../src/ota/create-agent.js';
import { loadDeviceIdentity } from '../../src/ota/device-identity.js';
import { Readiness } from '../../src/readiness.js';

// The update agent on file-backed slots against the real update server on 127.0.0.1, set up
// and served by ota-server's own command line, run in this process (its binary has its own
// test): one fleet for the file, a new device for each test.
const SLOT_BYTES = 16 * 1024 * 1024;
const silentLog = { info: () => {}, warn: () => {}, error: () => {} };

/** Runs an ota-server command in this process; a non-zero exit throws with what it printed. */
async function otaServer(args: string[], stopSignal?: Promise<string>): Promise<string> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const sink = (chunks: Buffer[]) =>
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        chunks.push(chunk);
        done();
      },
    });
  const code = await runCli(args, { out: sink(out), err: sink(err), stopSignal });
  if (code !== 0) {
    throw new Error(`ota-server ${args[0]} exited with ${code}: ${Buffer.concat(err).toString()}`);
  }
  return Buffer.concat(out).toString();
}

/** An ext4 slot image of `SLOT_BYTES` whose app file differs by release. */
function slotImage(dir: string, version: string, app: Buffer): string {
  const tree = join(dir, `tree-${version}`);
  mkdirSync(join(tree, 'etc/edge'), { recursive: true });
  mkdirSync(join(tree, 'usr/lib/edge'), { recursive: true });
  writeFileSync(join(tree, 'etc/edge/release.json'), JSON.stringify({ version }));
  writeFileSync(join(tree, 'usr/lib/edge/edge-server.mjs'), app);
  writeFileSync(join(tree, 'usr/lib/edge/runtime.bin'), runtimeBytes());
  const image = join(dir, `rootfs-${version}.ext4`);
  execFileSync(
    'mke2fs',
    [
      '-q',
      '-F',
      '-t',
      'ext4',
      '-O',
      '^has_journal',
      '-U',
      '45444745-0000-4000-8000-000000000001',
      '-E',
      'hash_seed=45444745-0000-4000-8000-000000000001',
      '-d',
      tree,
      image,
      `${SLOT_BYTES / 1024}K`,
    ],
    {
      env: { ...process.env, E2FSPROGS_FAKE_TIME: '1704067200' },
    },
  );
  return image;
}

/** The same 4 MiB of incompressible bytes in every release: an AES-CTR keystream, seeded. */
let runtime: Buffer | undefined;
function runtimeBytes(): Buffer {
  const seed = createHash('sha256').update('runtime').digest();
  runtime ??= createCipheriv('aes-128-ctr', seed.subarray(0, 16), seed.subarray(16)).update(
    Buffer.alloc(4 * 1024 * 1024),
  );
  return runtime;
}

interface Fleet {
  dir: string;
  repo: string;
  url: string;
  /** Stops the server; resolves once it has closed. */
  stop: () => Promise<void>;
  operatorTokenFile: string;
  fleetTokenFile: string;
  images: Record<string, { path: string; sha256: string }>;
}

async function startFleet(): Promise<Fleet> {
  const dir = mkdtempSync(join(tmpdir(), 'edge-agent-'));
  const repo = join(dir, 'repo');
  await otaServer(['init', '--repo', repo]);
  const app1 = randomBytes(300 * 1024);
  const app2 = Buffer.concat([
    app1.subarray(0, 100_000),
    randomBytes(4096),
    app1.subarray(100_000),
  ]);
  const images: Fleet['images'] = {};
  for (const [version, app] of [
    ['1.0.0', app1],
    ['1.1.0', app2],
  ] as const) {
    const path = slotImage(dir, version, app);
    images[version] = { path, sha256: await sha256OfFile(path) };
    await otaServer(['publish', '--repo', repo, '--board', 'qemu', '--version', version, path]);
  }
  const fleetTokenFile = join(dir, 'fleet-token');
  const operatorTokenFile = join(dir, 'operator-token');
  writeFileSync(fleetTokenFile, `${randomBytes(16).toString('hex')}\n`, { mode: 0o600 });
  writeFileSync(operatorTokenFile, `${randomBytes(16).toString('hex')}\n`, { mode: 0o600 });
  let stopServer: (signal: string) => void = () => {};
  const stopSignal = new Promise<string>((resolve) => (stopServer = resolve));
  const url = `http://127.0.0.1:${await freePort()}`;
  const serving = otaServer(
    [
      'serve',
      '--repo',
      repo,
      '--port',
      url.split(':').at(-1)!,
      '--data',
      join(dir, 'server-data'),
      '--fleet-token-file',
      fleetTokenFile,
      '--operator-token-file',
      operatorTokenFile,
      '--check-in-seconds',
      '5',
      '--log-level',
      'silent',
    ],
    stopSignal,
  );
  const stop = async () => {
    stopServer('SIGTERM');
    await serving;
  };
  // serve resolves only once stopped: if it ends before /readyz answers, it did not start.
  let ended = false;
  void serving.then(
    () => (ended = true),
    () => (ended = true),
  );
  const readyz = () =>
    fetch(`${url}/readyz`).then(
      (answer) => answer.ok,
      () => false,
    );
  while (!ended && !(await readyz())) await new Promise((resolve) => setTimeout(resolve, 20));
  if (ended) {
    await serving;
    throw new Error('the update server stopped as it started');
  }
  await otaServer([
    'rollout',
    'create',
    '--board',
    'qemu',
    '--version',
    '1.1.0',
    '--percent',
    '100',
    '--server',
    url,
    '--operator-token-file',
    operatorTokenFile,
  ]);
  return { dir, repo, url, stop, operatorTokenFile, fleetTokenFile, images };
}

interface Device {
  dir: string;
  slots: { a: string; b: string };
  rebootMarker: string;
  boot(
    slot: 'a' | 'b',
    options?: { trial?: boolean },
  ): Promise<Awaited<ReturnType<typeof createUpdateAgent>>>;
}

/** A device whose slots, boot partition, /proc/cmdline and /data are files in a folder. */
async function makeDevice(fleet: Fleet): Promise<Device> {
  const dir = mkdtempSync(join(tmpdir(), 'edge-device-'));
  scratchDirs.push(dir);
  const slots = { a: join(dir, 'slot-a'), b: join(dir, 'slot-b') };
  // Partitions twice the image's size; the zeros past what is written are holes, not writes.
  copyFileSync(fleet.images['1.0.0']!.path, slots.a);
  truncateSync(slots.a, 2 * SLOT_BYTES);
  writeFileSync(slots.b, '');
  truncateSync(slots.b, 2 * SLOT_BYTES);
  mkdirSync(join(dir, 'boot'));
  await new AbStateStore(join(dir, 'boot')).write({ committed: 'a', attempts: 0, attemptLimit: 3 });
  mkdirSync(join(dir, 'data'));
  writeFileSync(join(dir, 'data', 'fleet-token'), readFileSync(fleet.fleetTokenFile));
  const rebootMarker = join(dir, 'rebooted');
  const device: Device = {
    dir,
    slots,
    rebootMarker,
    async boot(slot, { trial = false } = {}) {
      // What the slot holds decides its release; the boot script decides the command line.
      const running = slots[slot];
      const version = await readVersion(running);
      writeFileSync(join(dir, 'release.json'), JSON.stringify({ version }));
      writeFileSync(
        join(dir, 'cmdline'),
        `root=${running} edge.slot=${slot} edge.trial=${trial ? 1 : 0}\n`,
      );
      const config = loadConfig({
        env: {
          EDGE_OTA_SERVER_URL: fleet.url,
          EDGE_OTA_FLEET_TOKEN_FILE: join(dir, 'data', 'fleet-token'),
          EDGE_OTA_DATA_DIR: join(dir, 'data', 'edge'),
          EDGE_OTA_TRUSTED_ROOT_PATH: join(fleet.repo, 'metadata', '1.root.json'),
          EDGE_OTA_RELEASE_FILE: join(dir, 'release.json'),
          EDGE_OTA_BOARD: 'qemu',
          EDGE_OTA_STANDBY_SLOT_PATH: slot === 'a' ? slots.b : slots.a,
          EDGE_OTA_REBOOT_COMMAND: `touch ${rebootMarker}`,
          EDGE_OTA_HEALTH_DEADLINE_SECONDS: '10',
        },
      });
      const bootState = new BootState({
        stateDir: join(dir, 'boot'),
        commitMarker: join(dir, 'committed'),
        cmdlinePath: join(dir, 'cmdline'),
      });
      const firmwareHash = new FirmwareHash(running);
      const readiness = new Readiness();
      return createUpdateAgent(config.ota, {
        bootState,
        firmwareHash,
        readiness,
        log: silentLog,
        bucket: bandwidthBucket(0, 1 << 20),
      });
    },
  };
  return device;
}

// One fleet (repository, two releases and their delta, server, roll-out) for the file's tests;
// they run serially because one of them serves a tampered delta while it runs.
let fleet: Fleet;
const scratchDirs: string[] = [];
test.before(async () => {
  fleet = await startFleet();
  scratchDirs.push(fleet.dir);
});
test.after.always(async () => {
  await fleet?.stop();
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

/** The release a slot file holds, read the way the device would see it (by its image hash). */
async function readVersion(slotFile: string): Promise<string> {
  const sha = await sha256OfFile(slotFile, SLOT_BYTES);
  const found = Object.entries(fleet.images).find(([, image]) => image.sha256 === sha);
  if (!found) throw new Error(`${slotFile} holds no published image`);
  return found[0];
}

async function deviceIdOf(device: Device): Promise<string> {
  return (await loadDeviceIdentity(join(device.dir, 'data', 'edge'))).deviceId;
}

async function deviceRecord(
  fleet: Fleet,
  deviceId: string,
): Promise<{ lastCheckIn: Record<string, unknown> }> {
  const token = readFileSync(fleet.operatorTokenFile, 'utf8').trim();
  const response = await fetch(`${fleet.url}/api/v1/devices/${deviceId}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return (await response.json()) as { lastCheckIn: Record<string, unknown> };
}

test.serial(
  'the device updates by delta into the standby slot, reboots, and commits after the reboot',
  async (t) => {
    const device = await makeDevice(fleet);

    const agent = await device.boot('a');
    await agent.cycle();
    t.true(existsSync(device.rebootMarker), 'the reboot command ran');
    t.is(await sha256OfFile(device.slots.b, SLOT_BYTES), fleet.images['1.1.0']!.sha256);
    t.like(await new AbStateStore(join(device.dir, 'boot')).read(), {
      committed: 'a',
      trial: 'b',
      attempts: 0,
    });
    t.like(agent.status, { state: 'rebooting', targetVersion: '1.1.0' });
    const ota = JSON.parse(
      readFileSync(join(device.dir, 'data', 'edge', 'ota-state.json'), 'utf8'),
    ) as { pending: { deltaTarget?: string } };
    t.is(
      ota.pending.deltaTarget,
      'qemu/1.1.0/rootfs.from-1.0.0.bsdiff',
      'the delta, not the full image',
    );
    t.deepEqual(
      readdirSync(join(device.dir, 'data', 'edge', 'downloads')),
      [],
      'downloads cleaned up',
    );

    // U-Boot boots slot b as a trial; the agent finds itself healthy and commits.
    const afterReboot = await device.boot('b', { trial: true });
    await afterReboot.load();
    await afterReboot.settleAfterBoot();
    t.like(await new AbStateStore(join(device.dir, 'boot')).read(), {
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
    const device = await makeDevice(fleet);
    await (await device.boot('a')).cycle();
    t.true(existsSync(device.rebootMarker));

    // U-Boot tried slot b three times, then went back to a and recorded the failure.
    const store = new AbStateStore(join(device.dir, 'boot'));
    await store.write({ committed: 'a', attempts: 0, attemptLimit: 3, failedUpgrade: 'b' });
    rmSync(device.rebootMarker);
    const afterFallback = await device.boot('a');
    await afterFallback.load();
    await afterFallback.settleAfterBoot();
    t.like(afterFallback.status, { state: 'failed', targetVersion: '1.1.0' });
    t.regex(afterFallback.status.reason ?? '', /slot b did not come up in 3 attempts/);
    t.deepEqual(afterFallback.failedVersions, ['1.1.0']);

    await afterFallback.cycle();
    t.false(existsSync(device.rebootMarker), 'the failed release is not installed again');
    const record = await deviceRecord(fleet, await deviceIdOf(device));
    t.regex(JSON.stringify(record), /did not come up/);
  },
);

test.serial(
  'a tampered delta is refused before a byte reaches the standby slot; the full image follows',
  async (t) => {
    const device = await makeDevice(fleet);
    const deltaDir = join(fleet.repo, 'targets', 'qemu', '1.1.0');
    const deltaFile = readdirSync(deltaDir).find((name) => name.endsWith('.bsdiff'))!;
    const original = readFileSync(join(deltaDir, deltaFile));
    const delta = Buffer.from(original);
    delta.writeUInt8(delta.readUInt8(delta.length - 100) ^ 0x01, delta.length - 100);
    writeFileSync(join(deltaDir, deltaFile), delta);
    // The fleet is shared: the served delta is whole again for whatever runs next.
    t.teardown(() => writeFileSync(join(deltaDir, deltaFile), original));
    const standbyBefore = await sha256OfFile(device.slots.b);

    const agent = await device.boot('a');
    await agent.cycle();
    t.like(agent.status, { state: 'failed', targetVersion: '1.1.0' });
    t.regex(agent.status.reason ?? '', /SHA-256/);
    t.is(await sha256OfFile(device.slots.b), standbyBefore, 'the standby slot is untouched');
    t.false(existsSync(device.rebootMarker));
    t.like(await new AbStateStore(join(device.dir, 'boot')).read(), {
      committed: 'a',
      trial: undefined,
    });

    // The next check-in takes the full image instead, and the update goes through.
    await agent.cycle();
    t.true(existsSync(device.rebootMarker));
    t.is(await sha256OfFile(device.slots.b, SLOT_BYTES), fleet.images['1.1.0']!.sha256);
  },
);
