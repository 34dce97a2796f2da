import test from 'ava';
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { AbStateStore, sha256OfFile } from '@edge/formats';
import { CHUNK } from '../../src/ota/resumable-download.js';
import {
  agentEnv,
  bootSlot,
  makeFileDevice,
  startFleet,
  type FileDevice,
  type Fleet,
} from './fleet.js';
import { seededBytes, seededRandom } from './seeded.js';

// The update agent as a real process (agent-process.ts, bundled as on the device), killed
// with SIGKILL at seeded random moments of download, apply, verify and flag-setting, then
// started again, against the real update server. After every kill: a trial is only ever set
// for a slot that holds the signed image, and the running slot is byte for byte as it was.
// EDGE_KILL_SEED=<n> replays a run.

const SLOT_BYTES = 6 * 1024 * 1024;
const SEED = Number(process.env.EDGE_KILL_SEED ?? randomInt(2 ** 31));
// Slow enough that the ~1.5 MiB delta takes a couple of seconds, as on a metered link.
const BYTES_PER_SECOND = 1_000_000;

type Phase = 'downloading' | 'applying' | 'verifying' | 'rebooting';
const PHASES: Phase[] = ['downloading', 'applying', 'verifying', 'rebooting'];
/** The kills of a run in the order their phases come, each a seeded delay after its status shows. */
const PLAN: Array<{ phase: Phase; count: number; maxDelayMs: number }> = [
  { phase: 'downloading', count: 3, maxDelayMs: 600 },
  { phase: 'applying', count: 3, maxDelayMs: 120 },
  { phase: 'verifying', count: 2, maxDelayMs: 40 },
  { phase: 'rebooting', count: 3, maxDelayMs: 80 },
];

function killPlan(random: () => number): Array<{ phase: Phase; delayMs: number }> {
  return PLAN.flatMap(({ phase, count, maxDelayMs }) =>
    Array.from({ length: count }, () => ({ phase, delayMs: Math.floor(random() * maxDelayMs) })),
  );
}

let fleet: Fleet;
let agentBundle: string;
const scratchDirs: string[] = [];
test.before(async () => {
  const runtime = seededBytes('runtime', 2 * 1024 * 1024);
  const release = (version: string, appBytes: number) => ({
    version,
    files: {
      'usr/lib/edge/runtime.bin': runtime,
      'usr/lib/edge/edge-server.mjs': seededBytes(`app ${version}`, appBytes),
    },
  });
  // One file run by plain node, as on the device: a restart costs ~0.2 s instead of tsx's ~1 s.
  const bundleDir = mkdtempSync(join(tmpdir(), 'edge-kill-bundle-'));
  scratchDirs.push(bundleDir);
  agentBundle = join(bundleDir, 'agent-process.mjs');
  const bundled = build({
    entryPoints: [fileURLToPath(new URL('agent-process.ts', import.meta.url))],
    outfile: agentBundle,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    minify: true,
    logLevel: 'warning',
    banner: {
      js: "import { createRequire as __edgeCreateRequire } from 'node:module'; const require = __edgeCreateRequire(import.meta.url);",
    },
  });
  // The new release's app is new bytes: a delta of ~1.5 MiB, long enough to kill in.
  fleet = await startFleet({
    slotBytes: SLOT_BYTES,
    releases: [release('1.0.0', 256 * 1024), release('1.1.0', 1536 * 1024)],
  });
  scratchDirs.push(fleet.dir);
  await bundled;
});
test.after.always(async () => {
  await fleet?.stop();
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
});

interface AgentProcess {
  output: string[];
  exited: Promise<void>;
  kill(): Promise<void>;
}

/** Starts the agent as U-Boot would have booted `slot`. */
function startAgent(device: FileDevice, slot: 'a' | 'b', trial: boolean): AgentProcess {
  const running = device.slots[slot];
  bootSlot(device, slot, slot === 'a' ? '1.0.0' : '1.1.0', trial);
  const child = spawn(process.execPath, [agentBundle], {
    cwd: device.dir,
    env: {
      PATH: process.env.PATH,
      EDGE_TEST_CMDLINE: join(device.dir, 'cmdline'),
      EDGE_FIRMWARE_SLOT_PATH: running,
      EDGE_BOOT_STATE_DIR: device.bootPartition,
      EDGE_BOOT_COMMIT_MARKER: join(device.dir, 'committed'),
      ...agentEnv(fleet, device, slot),
      // A reboot takes a while: a kill can land after the flags and before the reboot.
      EDGE_OTA_REBOOT_COMMAND: `sleep 0.2 && touch ${device.rebootMarker}`,
      EDGE_OTA_HEALTH_DEADLINE_SECONDS: '10',
      EDGE_OTA_CHECK_IN_SECONDS: '1',
      EDGE_OTA_BANDWIDTH_BYTES_PER_SECOND: String(BYTES_PER_SECOND),
      EDGE_OTA_BANDWIDTH_BURST_BYTES: '65536',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: a kill takes the reboot command it may have started with it.
    detached: true,
  });
  const output: string[] = [];
  child.stdout.setEncoding('utf8').on('data', (text: string) => output.push(text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => output.push(text));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return {
    output,
    exited,
    kill: async () => {
      process.kill(-child.pid!, 'SIGKILL');
      await exited;
    },
  };
}

/** The agent's status as last saved, if saved since `since` (each save writes a new file). */
function savedStatus(device: FileDevice, since: number): string | undefined {
  const path = join(device.data, 'ota-state.json');
  try {
    if (statSync(path).mtimeMs < since) return undefined;
    return (JSON.parse(readFileSync(path, 'utf8')) as { status: { state: string } }).status.state;
  } catch {
    return undefined; // not written yet, or replaced between stat and read
  }
}

function partialSize(device: FileDevice, sha256: string): number | undefined {
  try {
    return statSync(join(device.data, 'downloads', `${sha256}.part`)).size;
  } catch {
    return undefined;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('the agent killed at random points resumes or redoes the step and never flags an unverified slot', async (t) => {
  t.timeout(60_000);
  const context = `seed ${SEED} (EDGE_KILL_SEED=${SEED} replays it)`;
  t.log(context);
  const plan = killPlan(seededRandom(SEED));
  const device = await makeFileDevice(fleet);
  const store = new AbStateStore(device.bootPartition);
  const target = fleet.images['1.1.0']!;
  const runningBefore = await sha256OfFile(device.slots.a);
  const delta = readdirSync(join(fleet.repo, 'targets', 'qemu', '1.1.0')).find((name) =>
    name.endsWith('.bsdiff'),
  )!;
  const deltaSha = delta.split('.')[0]!;

  const landed: Record<string, number> = {};
  const kills: string[] = [];
  let resumeFloor: number | undefined;
  let resumesChecked = 0;
  let completed = false;
  for (let round = 0; !completed && round <= plan.length; round++) {
    const aim = plan[round];
    const startedAt = Date.now();
    const agent = startAgent(device, 'a', false);
    let fireAt: number | undefined;
    let smallestPartial = Infinity;
    let state = 'start-up';
    const deadline = Date.now() + 20_000;
    // Watch the status on disk; kill `delayMs` after the aimed phase (or a later one) shows.
    for (;;) {
      if (existsSync(device.rebootMarker)) {
        completed = true;
        break;
      }
      state = savedStatus(device, startedAt) ?? state;
      const partial = partialSize(device, deltaSha);
      if (partial !== undefined && state === 'downloading')
        smallestPartial = Math.min(smallestPartial, partial);
      const phaseIndex = PHASES.indexOf(state as Phase);
      if (aim && fireAt === undefined && phaseIndex >= PHASES.indexOf(aim.phase)) {
        fireAt = Date.now() + aim.delayMs;
      }
      // An aim that a shortened run skipped (a resumed one verifies at once) lands on the flags.
      if (aim && state === 'rebooting' && aim.phase !== 'rebooting') fireAt = Date.now();
      if (fireAt !== undefined && Date.now() >= fireAt) break;
      if (Date.now() > deadline) {
        t.fail(`${context}: no progress in round ${round}: ${agent.output.join('')}`);
        await agent.kill();
        return;
      }
      await sleep(1);
    }
    await agent.kill();
    if (resumeFloor !== undefined && smallestPartial !== Infinity) {
      resumesChecked++;
      t.true(
        smallestPartial >= resumeFloor,
        `${context}: the download started again at ${smallestPartial} bytes, not ${resumeFloor}`,
      );
    }
    resumeFloor = undefined;

    // Where the kill landed, as the disk tells it.
    const flags = await store.read();
    let where = savedStatus(device, startedAt) ?? 'start-up';
    if (existsSync(device.rebootMarker)) where = 'reboot command ran';
    else if (where === 'rebooting') where = flags.trial ? 'flags: trial set' : 'flags: before';
    if (where === 'downloading') {
      const partial = partialSize(device, deltaSha);
      if (partial !== undefined) resumeFloor = Math.floor(partial / CHUNK) * CHUNK;
    }
    if (!completed || where !== 'reboot command ran') {
      landed[where] = (landed[where] ?? 0) + 1;
      kills.push(`${aim?.phase}+${aim?.delayMs}ms→${where}`);
    }

    // The invariants, after every kill.
    t.is(flags.committed, 'a', `${context}, kill ${kills.length}: the committed slot`);
    if (flags.trial) {
      t.is(flags.trial, 'b', `${context}: a trial only for the standby slot`);
      t.is(
        await sha256OfFile(device.slots.b, SLOT_BYTES),
        target.sha256,
        `${context}, kill ${kills.length} (${where}): a trial set for slot b, which does not hold the signed image`,
      );
    }
    t.is(
      await sha256OfFile(device.slots.a),
      runningBefore,
      `${context}, kill ${kills.length} (${where}): the running slot changed`,
    );
  }
  t.log(`kills: ${kills.join(', ')}`);
  t.log(`landed: ${JSON.stringify(landed)}; downloads seen resuming: ${resumesChecked}`);
  t.true(completed, `${context}: the update completed`);
  t.is(
    kills.length,
    plan.length,
    `${context}: every planned kill landed before the update completed`,
  );
  t.true((landed.downloading ?? 0) > 0, `${context}: a kill during the download`);

  // The reboot command ran for a verified slot on trial.
  t.is(await sha256OfFile(device.slots.b, SLOT_BYTES), target.sha256);
  t.like(await store.read(), { committed: 'a', trial: 'b' });

  // U-Boot boots slot b on trial; the agent, healthy, commits it.
  const afterReboot = startAgent(device, 'b', true);
  const deadline = Date.now() + 15_000;
  while ((await store.read()).committed !== 'b' && Date.now() < deadline) await sleep(20);
  await afterReboot.kill();
  t.like(await store.read(), { committed: 'b', trial: undefined }, context);
});
