import { join } from 'node:path';
import { prepareScenarioFleet } from './update-scenarios.js';
import { getJson } from './fleet.js';
import { partitionSha256, readAbState, readDataFile, scratchDir, writeAbState } from './images.js';
import type { OtaStatus } from './ota-watch.js';
import { QemuDevice, freePort } from './qemu-device.js';
import { scenario } from './scenario.js';
import { seededRandom } from '../../app/test/ota/seeded.js';

/** Where an update is, as seen from outside: the agent's status, or U-Boot on the console. */
type Phase = 'download' | 'patch' | 'verify' | 'flags' | 'first-boot' | 'done';
const ORDER: Phase[] = ['download', 'patch', 'verify', 'flags', 'first-boot', 'done'];
/** How many cuts each phase gets, and how long after entering it a cut may land (ms). */
const PLAN: Array<{ phase: Phase; cuts: number; windowMs: number }> = [
  { phase: 'download', cuts: 3, windowMs: 10_000 },
  { phase: 'patch', cuts: 3, windowMs: 25_000 },
  { phase: 'verify', cuts: 2, windowMs: 9000 },
  { phase: 'flags', cuts: 3, windowMs: 800 },
  // Cheap cuts (a boot, not a patch, to redo), so the most of them.
  { phase: 'first-boot', cuts: 9, windowMs: 15_000 },
];
const CUTS = PLAN.reduce((sum, { cuts }) => sum + cuts, 0);
// Cuts during the first boot of the new slot count as attempts: leave room for them.
const ATTEMPT_LIMIT = 15;

function phaseOf(status: OtaStatus['status'] | undefined, version: string): Phase | undefined {
  if (!status || status.targetVersion !== version) return undefined;
  switch (status.state) {
    case 'downloading':
      return 'download';
    case 'applying':
      return 'patch';
    case 'verifying':
      return 'verify';
    case 'rebooting':
      return 'flags';
    case 'committed':
      return 'done';
    default:
      return undefined;
  }
}

/** The phase the device is in now, if it says. */
async function phaseNow(device: QemuDevice, version: string): Promise<Phase | undefined> {
  // A trial boot of the new slot is U-Boot's business: its console says when one started.
  if (/edge-boot: trying slot b, attempt/.test(device.console)) return 'first-boot';
  const ota = await getJson<OtaStatus>(`${device.baseUrl}/api/v1/ota/status`);
  return phaseOf(ota?.status, version);
}

/** Waits until the device is in `phase` (resolves true) or past it (false). */
async function reach(device: QemuDevice, phase: Phase, version: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const now = await phaseNow(device, version);
    if (now === phase) return true;
    if (now && ORDER.indexOf(now) > ORDER.indexOf(phase)) return false;
    // The flags are written within a second or so of the end of the verification: look often.
    const pollMs = now === 'verify' && phase === 'flags' ? 25 : 200;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
  throw new Error(`the device never got to ${phase}; console:\n${device.console.slice(-1500)}`);
}

scenario(
  `power cuts: ${CUTS} seeded cuts during download, patching, flag writing and first boot`,
  30,
  async (t, say) => {
    const seed = Number(process.env.EDGE_POWER_CUT_SEED ?? Math.floor(Math.random() * 2 ** 31));
    say(`seed ${seed} (EDGE_POWER_CUT_SEED=${seed} repeats these cuts)`);
    const next = seededRandom(seed);
    const { fleet, releases } = prepareScenarioFleet(t);
    // From v2 to the release with 12 MiB of new data: a delta whose download lasts long enough
    // for cuts to land in it, and to resume from the MiB it had synced.
    const { v2: running, bigDelta: target } = releases;
    const server = await fleet.startServer(await freePort());
    t.teardown(() => server.stop());
    server.rollout(target.version);
    const { dir, cleanup } = scratchDir('power-cut');
    t.teardown(cleanup);
    const disk = join(dir, 'disk.img');
    // 1 MiB/s: the 12 MiB delta takes about 12 s, synced every MiB.
    fleet.provisionDisk(running, disk, {
      serverPort: server.port,
      settings: {
        EDGE_OTA_BANDWIDTH_BYTES_PER_SECOND: String(1 << 20),
        EDGE_OTA_BANDWIDTH_BURST_BYTES: String(64 << 10),
      },
      files: { '/keep.txt': `written before the update, seed ${seed}\n` },
    });
    await writeAbState(disk, dir, { committed: 'a', attempts: 0, attemptLimit: ATTEMPT_LIMIT });

    let device = await QemuDevice.start({ disk });
    t.teardown(() => device.stop());
    const landed: Phase[] = [];
    let carried = 0;
    for (const { phase, cuts, windowMs } of PLAN) {
      const planned = cuts + carried;
      carried = 0;
      for (let cut = 0; cut < planned; cut++) {
        if (!(await reach(device, phase, target.version, 240_000))) {
          carried = planned - cut;
          say(`past ${phase} already: ${carried} cuts go to the next phase`);
          break;
        }
        const delay = Math.round(next() * windowMs);
        await new Promise((resolve) => setTimeout(resolve, delay));
        const at = (await phaseNow(device, target.version)) ?? phase;
        await device.powerCut();
        landed.push(at);
        say(`cut ${landed.length}: ${phase} + ${delay} ms, landed in ${at}`);

        // What a cut may never leave: a trial flag on a slot that did not verify, or a
        // committed slot other than the running one.
        const flags = await readAbState(disk, dir);
        t.is(flags.committed, 'a', `cut ${landed.length}: the committed slot changed`);
        if (flags.trial === 'b') {
          t.is(
            await partitionSha256(disk, 3, target.bytes),
            target.sha256,
            `cut ${landed.length}: a trial of a slot that did not verify`,
          );
        }
        device = await QemuDevice.start({ disk });
      }
    }
    t.true(landed.length >= 20, `only ${landed.length} cuts landed`);
    t.is(
      await partitionSha256(disk, 2, running.bytes),
      running.sha256,
      'the running slot was written',
    );

    // Left alone, the device finishes the update.
    const seen = await server.waitForDevice(
      (checkIn) => checkIn.update.state === 'committed' && checkIn.version === target.version,
      300_000,
    );
    t.is(seen.firmwareHash, target.sha256);
    await device.stop();
    t.like(await readAbState(disk, dir), { committed: 'b', trial: undefined });
    t.is(readDataFile(disk, '/keep.txt'), `written before the update, seed ${seed}\n`);
    say(
      `${landed.length} cuts (${PLAN.map(({ phase }) => `${landed.filter((p) => p === phase).length} ${phase}`).join(', ')}); update committed`,
    );
  },
);
