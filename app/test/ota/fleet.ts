import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { sha256OfFile } from '@edge/formats';
import { runCli } from '@edge/ota-server';
import { freePort } from '../../../bench/lib/http-load.js';

// The real update server for the agent's fault tests: a TUF repository made and served by
// ota-server's own command line in the test's process, with releases of small ext4 slots.

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

/** Incompressible bytes that are the same at every run: an AES-CTR keystream keyed by a label. */
export function seededBytes(label: string, length: number): Buffer {
  const key = createHash('sha256').update(label).digest();
  return createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16)).update(
    Buffer.alloc(length),
  );
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
