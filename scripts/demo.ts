// The main job: build images v1 and v2, start the update server on 127.0.0.1, publish both
// releases, boot the QEMU device on v1 and watch it update itself by delta to v2.
//   npm run demo   (EDGE_DEMO_PORT: the update server's port, 8443 by default;
//                   EDGE_DEMO_DIR: its working folder, out/demo by default)
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BAKED_SERVER_PORT,
  FLEET_BOARD,
  Fleet,
  getJson,
  type UpdateServer,
} from '../test/integration/fleet.js';
import { watchOta } from '../test/integration/ota-watch.js';
import { QemuDevice } from '../test/integration/qemu-device.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const WORK = process.env.EDGE_DEMO_DIR ?? join(ROOT, 'out', 'demo');
const PORT = Number(process.env.EDGE_DEMO_PORT ?? BAKED_SERVER_PORT);
const RELEASES = ['1.0.0', '1.1.0'] as const;
const UPDATE_DEADLINE_MS = 15 * 60 * 1000;

const phases: Array<{ name: string; seconds: number }> = [];
const started = performance.now();
let server: UpdateServer | undefined;
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

async function shutdown(code: number): Promise<never> {
  await device?.stop().catch(() => undefined);
  await server?.stop().catch(() => undefined);
  process.exit(code);
}

async function main(): Promise<void> {
  const fleet = new Fleet(WORK, (line) => say(`  ${line}`));
  const releases = await phase(
    'images v1 and v2 (scripts/build-image.sh), published (v2 with a BSDIFF40 delta from v1)',
    () =>
      fleet.prepare([
        { version: RELEASES[0], deltaFrom: [] },
        { version: RELEASES[1], deltaFrom: [RELEASES[0]] },
      ]),
  );
  const [v1, v2] = [releases[RELEASES[0]]!, releases[RELEASES[1]]!];
  server = await phase(`update server on 127.0.0.1:${PORT}`, () => fleet.startServer(PORT));
  await phase(`roll-out of ${v2.version} to 100% of ${FLEET_BOARD}`, () =>
    server!.rollout(v2.version),
  );

  const disk = join(WORK, 'device.img');
  await phase('device disk: v1, provisioned with the fleet token', () =>
    fleet.provisionDisk(v1, disk, { serverPort: PORT }),
  );
  device = await QemuDevice.start({ disk });
  await phase('boot v1 (QEMU virt, stock U-Boot)', async () => {
    const hash = await device!.waitForHttp('/api/v1/firmware/hash', 180_000);
    say(`  firmware hash ${((await hash.json()) as { hash: string }).hash.slice(0, 16)}… (v1)`);
  });
  const ota = await phase(
    `update to ${v2.version}: download, patch slot b, verify, reboot, commit`,
    () =>
      watchOta(
        device!,
        async ({ status }) => {
          if (status.state === 'failed' || status.state === 'rolled-back') {
            throw new Error(`the update ${status.state}: ${status.reason}`);
          }
          if (status.state !== 'committed' || status.targetVersion !== v2.version) return false;
          const hash = await getJson<{ hash: string }>(`${device!.baseUrl}/api/v1/firmware/hash`);
          return hash?.hash === v2.sha256;
        },
        { timeoutMs: UPDATE_DEADLINE_MS, onEvent: (line) => say(`  ${line}`), pollMs: 2000 },
      ),
  );
  const boot = await getJson<{ slot: string; committed: string }>(
    `${device.baseUrl}/api/v1/firmware/boot`,
  );
  const seen = (await server.devices())[0]?.lastCheckIn;

  const download = ota.lastDownload;
  const full = v2.bytes;
  process.stdout.write('\nSummary\n');
  process.stdout.write(
    `  versions          ${v1.version} -> ${v2.version} (board ${FLEET_BOARD})\n`,
  );
  process.stdout.write(`  running           slot ${boot?.slot}, committed ${boot?.committed}\n`);
  process.stdout.write(
    `  update server     sees ${seen ? `${seen.version}, ${seen.update.state}` : 'nothing'}\n`,
  );
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
