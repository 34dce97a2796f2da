// The main job: build images v1 and v2, start the update server on 127.0.0.1, publish both
// releases, boot the QEMU device on v1 and watch it update itself by delta to v2.
//   npm run demo   (EDGE_DEMO_PORT: the update server's port, 8443 by default;
//                   EDGE_DEMO_DIR: its working folder, out/demo by default)
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { copyDisk } from '../test/integration/disk-image.js';
import { writeDataFiles } from '../test/integration/images.js';
import { QemuDevice } from '../test/integration/qemu-device.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WORK = process.env.EDGE_DEMO_DIR ?? join(ROOT, 'out', 'demo');
const REPO = join(WORK, 'repo');
const PORT = Number(process.env.EDGE_DEMO_PORT ?? 8443);
const BOARD = 'qemu';
const RELEASES = ['1.0.0', '1.1.0'] as const;
const OTA_SERVER = join(ROOT, 'ota-server', 'bin', 'ota-server.js');
const UPDATE_DEADLINE_MS = 15 * 60 * 1000;

const phases: Array<{ name: string; seconds: number }> = [];
const started = performance.now();
let server: ChildProcess | undefined;
let device: QemuDevice | undefined;

function say(text: string): void {
  const elapsed = ((performance.now() - started) / 1000).toFixed(0).padStart(4);
  process.stdout.write(`[${elapsed} s] ${text}\n`);
}

async function phase<T>(name: string, work: () => Promise<T> | T): Promise<T> {
  say(`${name} ...`);
  const begin = performance.now();
  const result = await work();
  const seconds = (performance.now() - begin) / 1000;
  phases.push({ name, seconds });
  say(`${name}: done in ${seconds.toFixed(1)} s`);
  return result;
}

function otaServer(...args: string[]): string {
  return execFileSync(process.execPath, [OTA_SERVER, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

function secretFile(name: string): string {
  const path = join(WORK, name);
  if (!existsSync(path))
    writeFileSync(path, `${randomBytes(24).toString('hex')}\n`, { mode: 0o600 });
  return path;
}

interface Manifest {
  slotImage: { sha256: string; bytes: number };
}

function buildImage(version: string): Manifest {
  execFileSync(
    join(ROOT, 'scripts', 'build-image.sh'),
    [
      '--version',
      version,
      '--out',
      join(WORK, 'images'),
      '--ota-url',
      `http://10.0.2.2:${PORT}`,
      '--tuf-root',
      join(REPO, 'metadata', '1.root.json'),
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  return JSON.parse(
    readFileSync(join(WORK, 'images', version, 'manifest.json'), 'utf8'),
  ) as Manifest;
}

async function startServer(fleetToken: string, operatorToken: string): Promise<string> {
  const data = join(WORK, 'server-data');
  rmSync(data, { recursive: true, force: true });
  server = spawn(
    process.execPath,
    [
      OTA_SERVER,
      'serve',
      '--repo',
      REPO,
      '--host',
      '127.0.0.1',
      '--port',
      String(PORT),
      '--data',
      data,
      '--fleet-token-file',
      fleetToken,
      '--operator-token-file',
      operatorToken,
      '--check-in-seconds',
      '5',
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  let exitCode: number | null | undefined;
  server.once('exit', (code) => (exitCode = code));
  const url = `http://127.0.0.1:${PORT}`;
  for (let tries = 0; tries < 120; tries++) {
    if (exitCode !== undefined) {
      throw new Error(
        `the update server stopped (exit ${exitCode}); is port ${PORT} free? (EDGE_DEMO_PORT)`,
      );
    }
    if (await getJson(`${url}/healthz`)) return url;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error('the update server did not answer within 30 s');
}

interface OtaStatus {
  lastDownload: { target: string; bytes: number } | null;
  status: {
    state: string;
    targetVersion?: string;
    progress?: number;
    bytesDone?: number;
    bytesTotal?: number;
    reason?: string;
  };
}

async function getJson<T>(url: string): Promise<T | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(3000) });
    return response.ok ? ((await response.json()) as T) : undefined;
  } catch {
    return undefined;
  }
}

/** Prints the device's update status as it changes, until it runs `version` committed. */
async function watchUpdate(
  dev: QemuDevice,
  version: string,
  expectedHash: string,
): Promise<{ target: string; bytes: number } | null> {
  const deadline = Date.now() + UPDATE_DEADLINE_MS;
  let last = '';
  let consoleSeen = 0;
  while (Date.now() < deadline) {
    for (const line of dev.console.slice(consoleSeen).split('\n').slice(0, -1)) {
      if (/edge-boot:|rcS: up|edge-trial-watchdog/.test(line))
        say(`  device console: ${line.trim()}`);
    }
    consoleSeen = dev.console.lastIndexOf('\n') + 1;
    const ota = await getJson<OtaStatus>(`${dev.baseUrl}/api/v1/ota/status`);
    if (ota) {
      const { state, targetVersion, progress, reason } = ota.status;
      const shown = `${state}${targetVersion ? ` ${targetVersion}` : ''}${progress !== undefined ? ` ${(progress * 100).toFixed(0)}%` : ''}${reason ? `: ${reason}` : ''}`;
      if (shown !== last) say(`  update: ${shown}`);
      last = shown;
      if (state === 'failed') throw new Error(`the update failed: ${reason}`);
      if (state === 'committed' && targetVersion === version) {
        const hash = await getJson<{ hash: string }>(`${dev.baseUrl}/api/v1/firmware/hash`);
        if (hash?.hash === expectedHash) return ota.lastDownload;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  throw new Error(
    `the device did not reach ${version} within ${UPDATE_DEADLINE_MS / 60000} minutes`,
  );
}

async function shutdown(code: number): Promise<never> {
  await device?.stop().catch(() => undefined);
  server?.kill('SIGTERM');
  process.exit(code);
}

/** The SHA-256 of the image published for a version (targets are stored by hash). */
function publishedImageSha256(version: string): string | undefined {
  const folder = join(REPO, 'targets', BOARD, version);
  if (!existsSync(folder)) return undefined;
  const image = readdirSync(folder).find((name) => name.endsWith('.rootfs.ext4'));
  return image?.split('.')[0];
}

async function main(retried = false): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  const fleetToken = secretFile('fleet-token');
  const operatorToken = secretFile('operator-token');

  await phase('update server repository', () => {
    if (!existsSync(join(REPO, 'metadata'))) otaServer('init', '--repo', REPO);
    otaServer('refresh', '--repo', REPO);
  });
  const manifests = await phase('images v1 and v2 (scripts/build-image.sh)', () =>
    Object.fromEntries(RELEASES.map((version) => [version, buildImage(version)])),
  );
  const stale = RELEASES.filter((version) => {
    const published = publishedImageSha256(version);
    return published !== undefined && published !== manifests[version]!.slotImage.sha256;
  });
  if (stale.length > 0) {
    // The code changed since the last demo: its releases are published with other bytes.
    if (retried) throw new Error(`${stale.join(', ')} published with other bytes twice`);
    say(`the demo repository holds older builds of ${stale.join(', ')}: starting it afresh`);
    rmSync(REPO, { recursive: true, force: true });
    rmSync(join(WORK, 'images'), { recursive: true, force: true });
    return main(true);
  }
  await phase('publish both releases (v2 with a BSDIFF40 delta from v1)', () => {
    for (const version of RELEASES) {
      if (publishedImageSha256(version)) continue;
      otaServer(
        'publish',
        '--repo',
        REPO,
        '--board',
        BOARD,
        '--version',
        version,
        join(WORK, 'images', version, 'rootfs.ext4'),
      );
    }
  });
  const url = await phase(`update server on 127.0.0.1:${PORT}`, () =>
    startServer(fleetToken, operatorToken),
  );
  await phase(`roll-out of ${RELEASES[1]} to 100% of ${BOARD}`, () =>
    otaServer(
      'rollout',
      'create',
      '--board',
      BOARD,
      '--version',
      RELEASES[1],
      '--percent',
      '100',
      '--server',
      url,
      '--operator-token-file',
      operatorToken,
    ),
  );

  const disk = join(WORK, 'device.img');
  await phase('device disk: v1, provisioned with the fleet token', () => {
    copyDisk(join(WORK, 'images', RELEASES[0], 'qemu-disk.img'), disk);
    writeDataFiles(disk, WORK, { '/edge/fleet-token': readFileSync(fleetToken, 'utf8') });
  });
  device = await QemuDevice.start({ disk });
  await phase('boot v1 (QEMU virt, stock U-Boot)', async () => {
    const hash = await device!.waitForHttp('/api/v1/firmware/hash', 180_000);
    say(`  firmware hash ${((await hash.json()) as { hash: string }).hash.slice(0, 16)}… (v1)`);
  });
  const download = await phase(
    `update to ${RELEASES[1]}: download, patch slot b, verify, reboot, commit`,
    () => watchUpdate(device!, RELEASES[1], manifests[RELEASES[1]]!.slotImage.sha256),
  );
  const boot = await getJson<{ slot: string; committed: string }>(
    `${device.baseUrl}/api/v1/firmware/boot`,
  );

  const full = manifests[RELEASES[1]]!.slotImage.bytes;
  process.stdout.write('\nSummary\n');
  process.stdout.write(`  versions          ${RELEASES[0]} -> ${RELEASES[1]} (board ${BOARD})\n`);
  process.stdout.write(`  running           slot ${boot?.slot}, committed ${boot?.committed}\n`);
  process.stdout.write(
    `  downloaded        ${download ? `${download.bytes.toLocaleString('en')} bytes (${download.target})` : 'nothing'}, the full image being ${full.toLocaleString('en')} bytes${download ? ` (${((100 * download.bytes) / full).toFixed(3)}%)` : ''}\n`,
  );
  for (const { name, seconds } of phases) {
    process.stdout.write(`  ${seconds.toFixed(1).padStart(7)} s  ${name}\n`);
  }
  process.stdout.write(
    `  ${((performance.now() - started) / 1000).toFixed(1).padStart(7)} s  in all\n`,
  );
  await shutdown(0);
}

process.once('SIGINT', () => {
  say('interrupted: stopping the device and the update server');
  void shutdown(130);
});
main().catch(async (error: unknown) => {
  say(`demo failed: ${(error as Error).message}`);
  if (device) process.stderr.write(`last console lines:\n${device.console.slice(-2000)}\n`);
  await shutdown(1);
});
