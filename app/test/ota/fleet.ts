import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
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
import { SlotHashRecords } from '../../src/slot-hash-records.js';
import type { AppActivation } from '../../src/ota/app-installer.js';
import { bandwidthBucket, createUpdateAgent } from '../../src/ota/create-agent.js';
import { loadDeviceIdentity } from '../../src/ota/device-identity.js';
import { Readiness } from '../../src/readiness.js';
import { seededBytes } from './seeded.js';

// The real update server for the agent's tests: a TUF repository made and served by
// ota-server's own command line in the test's process, with releases of small ext4 slots;
// and devices whose slots, boot partition and /data are files in a folder.

/** Runs an ota-server command in this process; a non-zero exit throws with what it printed. */
export async function otaServer(args: string[], stopSignal?: Promise<string>): Promise<string> {
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

/** A deterministic ext4 slot image of `slotBytes` holding a release file and the given files. */
export function slotImage(
  dir: string,
  version: string,
  files: Record<string, Buffer>,
  slotBytes: number,
): string {
  const tree = join(dir, `tree-${version}`);
  mkdirSync(join(tree, 'etc/edge'), { recursive: true });
  writeFileSync(join(tree, 'etc/edge/release.json'), JSON.stringify({ version }));
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(tree, path, '..'), { recursive: true });
    writeFileSync(join(tree, path), content);
  }
  const image = join(dir, `rootfs-${version}.ext4`);
  const uuid = '45444745-0000-4000-8000-000000000001';
  execFileSync(
    'mke2fs',
    [
      ...['-q', '-F', '-t', 'ext4', '-O', '^has_journal', '-U', uuid, '-E', `hash_seed=${uuid}`],
      ...['-d', tree, image, `${slotBytes / 1024}K`],
    ],
    { env: { ...process.env, E2FSPROGS_FAKE_TIME: '1704067200' } },
  );
  return image;
}

export interface Release {
  version: string;
  files: Record<string, Buffer>;
}

export interface FleetOptions {
  slotBytes: number;
  releases: Release[];
  /** What the server tells devices; it accepts 5 at least. */
  checkInSeconds?: number;
}

export interface Fleet {
  /** Scratch folder of the fleet and its devices. */
  dir: string;
  repo: string;
  url: string;
  slotBytes: number;
  operatorTokenFile: string;
  fleetTokenFile: string;
  images: Record<string, { path: string; sha256: string }>;
  /** Stops the server; resolves once it has closed. */
  stop: () => Promise<void>;
}

/**
 * A repository with the releases published in order (each with its deltas from the ones
 * before), served on 127.0.0.1, and the last release rolled out to 100% of the qemu board.
 */
export async function startFleet(options: FleetOptions): Promise<Fleet> {
  const dir = mkdtempSync(join(tmpdir(), 'edge-fleet-'));
  try {
    return await serveFleet(dir, options);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

async function serveFleet(dir: string, options: FleetOptions): Promise<Fleet> {
  const repo = join(dir, 'repo');
  await otaServer(['init', '--repo', repo]);
  const images: Fleet['images'] = {};
  for (const { version, files } of options.releases) {
    const path = slotImage(dir, version, files, options.slotBytes);
    images[version] = { path, sha256: await sha256OfFile(path) };
    await otaServer(['publish', '--repo', repo, '--board', 'qemu', '--version', version, path]);
  }
  const fleetTokenFile = join(dir, 'fleet-token');
  const operatorTokenFile = join(dir, 'operator-token');
  writeFileSync(fleetTokenFile, `${seededBytes(dir, 16).toString('hex')}\n`, { mode: 0o600 });
  writeFileSync(operatorTokenFile, `${seededBytes(repo, 16).toString('hex')}\n`, { mode: 0o600 });
  let stopServer: (signal: string) => void = () => {};
  const stopSignal = new Promise<string>((resolve) => (stopServer = resolve));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const serving = otaServer(
    [
      'serve',
      '--repo',
      repo,
      '--port',
      String(port),
      '--data',
      join(dir, 'server-data'),
      '--fleet-token-file',
      fleetTokenFile,
      '--operator-token-file',
      operatorTokenFile,
      '--check-in-seconds',
      String(options.checkInSeconds ?? 5),
      '--log-level',
      'silent',
    ],
    stopSignal,
  );
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
  const stop = async () => {
    stopServer('SIGTERM');
    await serving;
  };
  const target = options.releases.at(-1)!.version;
  await otaServer([
    'rollout',
    'create',
    '--board',
    'qemu',
    '--version',
    target,
    '--percent',
    '100',
    '--server',
    url,
    '--operator-token-file',
    operatorTokenFile,
  ]).catch(async (error: unknown) => {
    await stop();
    throw error;
  });
  return {
    dir,
    repo,
    url,
    slotBytes: options.slotBytes,
    operatorTokenFile,
    fleetTokenFile,
    images,
    stop,
  };
}

/** The update server's view of a device, from its operator API. */
export async function deviceRecord(
  fleet: Fleet,
  deviceId: string,
): Promise<{ lastCheckIn: Record<string, unknown> }> {
  const token = readFileSync(fleet.operatorTokenFile, 'utf8').trim();
  const response = await fetch(`${fleet.url}/api/v1/devices/${deviceId}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  if (!response.ok) throw new Error(`operator API: HTTP ${response.status} for ${deviceId}`);
  return (await response.json()) as { lastCheckIn: Record<string, unknown> };
}

/** The update server's device id of a device, as its agent made it on first start. */
export async function deviceIdOf(device: FileDevice): Promise<string> {
  return (await loadDeviceIdentity(device.data)).deviceId;
}

export type Slot = 'a' | 'b';

export interface FileDevice {
  dir: string;
  /** Partitions twice the image's size; the zeros past what is written are holes, not writes. */
  slots: Record<Slot, string>;
  /** The boot partition's folder: the A/B flags. */
  bootPartition: string;
  /** The agent's data folder: its state, downloads and app releases. */
  data: string;
  fleetTokenFile: string;
  /** Touched by the reboot command. */
  rebootMarker: string;
}

/**
 * A device in a folder of the fleet's (removed with it): slot a holds the first release and is
 * committed, slot b is an empty partition, or `standby` when the test made its own.
 */
export async function makeFileDevice(
  fleet: Fleet,
  options: { standby?: string } = {},
): Promise<FileDevice> {
  const dir = mkdtempSync(join(fleet.dir, 'device-'));
  const partitionBytes = 2 * fleet.slotBytes;
  const slots = { a: join(dir, 'slot-a'), b: options.standby ?? join(dir, 'slot-b') };
  copyFileSync(Object.values(fleet.images)[0]!.path, slots.a);
  truncateSync(slots.a, partitionBytes);
  if (!options.standby) {
    writeFileSync(slots.b, '');
    truncateSync(slots.b, partitionBytes);
  }
  const bootPartition = join(dir, 'boot');
  mkdirSync(bootPartition);
  await new AbStateStore(bootPartition).write({ committed: 'a', attempts: 0, attemptLimit: 3 });
  const data = join(dir, 'data');
  mkdirSync(data);
  const fleetTokenFile = join(dir, 'fleet-token');
  writeFileSync(fleetTokenFile, readFileSync(fleet.fleetTokenFile));
  return { dir, slots, bootPartition, data, fleetTokenFile, rebootMarker: join(dir, 'rebooted') };
}

/** The release a slot file holds, found the way the device sees it: by its image's hash. */
export async function releaseIn(fleet: Fleet, slotFile: string): Promise<string> {
  const sha = await sha256OfFile(slotFile, fleet.slotBytes);
  const found = Object.entries(fleet.images).find(([, image]) => image.sha256 === sha);
  if (!found) throw new Error(`${slotFile} holds no published image`);
  return found[0];
}

/** What U-Boot leaves for the running system: the slot's release file and the command line. */
export function bootSlot(device: FileDevice, slot: Slot, version: string, trial: boolean): void {
  writeFileSync(join(device.dir, 'release.json'), JSON.stringify({ version }));
  writeFileSync(
    join(device.dir, 'cmdline'),
    `root=${device.slots[slot]} edge.slot=${slot} edge.trial=${trial ? 1 : 0}\n`,
  );
}

/** The agent's settings (EDGE_OTA_*) for a device booted from `slot`. */
export function agentEnv(fleet: Fleet, device: FileDevice, slot: Slot): Record<string, string> {
  return {
    EDGE_OTA_SERVER_URL: fleet.url,
    EDGE_OTA_FLEET_TOKEN_FILE: device.fleetTokenFile,
    EDGE_OTA_DATA_DIR: device.data,
    EDGE_OTA_TRUSTED_ROOT_PATH: join(fleet.repo, 'metadata', '1.root.json'),
    EDGE_OTA_RELEASE_FILE: join(device.dir, 'release.json'),
    EDGE_OTA_BOARD: 'qemu',
    EDGE_OTA_STANDBY_SLOT_PATH: slot === 'a' ? device.slots.b : device.slots.a,
    EDGE_OTA_REBOOT_COMMAND: `touch ${device.rebootMarker}`,
  };
}

export type UpdateAgent = Awaited<ReturnType<typeof createUpdateAgent>>;

const silentLog = { info: () => {}, warn: () => {}, error: () => {} };

/**
 * The update agent in this process, as the edge server assembles it, on a device that U-Boot
 * booted from `slot` (a and no trial by default); `env` adds to or overrides agentEnv.
 */
export async function bootAgent(
  fleet: Fleet,
  device: FileDevice,
  options: {
    slot?: Slot;
    trial?: boolean;
    env?: Record<string, string>;
    activateApps?: () => Promise<AppActivation>;
  } = {},
): Promise<UpdateAgent> {
  const { slot = 'a', trial = false, env = {}, activateApps } = options;
  bootSlot(device, slot, await releaseIn(fleet, device.slots[slot]), trial);
  const config = loadConfig({ env: { ...agentEnv(fleet, device, slot), ...env } });
  return createUpdateAgent(config.ota, {
    bootState: new BootState({
      stateDir: device.bootPartition,
      commitMarker: join(device.dir, 'committed'),
      cmdlinePath: join(device.dir, 'cmdline'),
    }),
    firmwareHash: new FirmwareHash(device.slots[slot], {
      records: new SlotHashRecords(device.data),
    }),
    readiness: new Readiness(),
    log: silentLog,
    bucket: bandwidthBucket(config.ota.bandwidthBytesPerSecond, config.ota.bandwidthBurstBytes),
    activateApps,
  });
}
