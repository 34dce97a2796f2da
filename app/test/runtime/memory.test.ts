import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expectedHeapLimitBytes, memoryBudget } from '../../src/runtime/memory-budget.js';
import { MemoryPressureMonitor, type PressureChange } from '../../src/runtime/memory-pressure.js';
import {
  KernelMemorySource,
  SimulatedMemorySource,
  readMemoryFacts,
  type MemoryRoots,
} from '../../src/runtime/memory-sources.js';
import { runtimeTestServer } from './runtime-helpers.js';
import { scratchDir } from '../../../test/scratch.js';

const MiB = 1024 * 1024;

/** A /proc and /sys/fs/cgroup of our own: files relative to a temporary root. */
function fixtureRoots(files: Record<string, string>): MemoryRoots {
  const root = scratchDir('edge-memory');
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return { procRoot: join(root, 'proc'), cgroupRoot: join(root, 'cgroup') };
}

const meminfo = (totalMiB: number, availableMiB: number) =>
  `MemTotal:       ${totalMiB * 1024} kB\nMemFree:        1000 kB\nMemAvailable:   ${availableMiB * 1024} kB\n`;

const v2 = (limit: string) => ({
  'proc/meminfo': meminfo(3800, 3000),
  'proc/self/cgroup': '0::/edge.service\n',
  'cgroup/edge.service/memory.max': `${limit}\n`,
  'cgroup/edge.service/memory.current': `${400 * MiB}\n`,
  'cgroup/edge.service/memory.pressure':
    'some avg10=12.50 avg60=3.00 avg300=1.00 total=100\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=5\n',
});

test('cgroup v2 memory.max sets the limit: 512 MiB gives a 128 MiB old generation and small semi-spaces', (t) => {
  const facts = readMemoryFacts(fixtureRoots(v2(String(512 * MiB))));
  t.like(facts.cgroup, { version: 2, limitBytes: 512 * MiB });
  const budget = memoryBudget(facts, { heapMiB: 0 });
  t.like(budget, { limitSource: 'cgroup v2', oldSpaceMiB: 128, semiSpaceMiB: 2 });
  t.deepEqual(budget.nodeFlags, ['--max-old-space-size=128', '--max-semi-space-size=2']);
  t.regex(budget.reasons.join('\n'), /from cgroup v2 .*below MemTotal/);
});

test('cgroup v2 "max" is no limit: the budget comes from MemTotal, capped by MemAvailable', (t) => {
  const facts = readMemoryFacts(fixtureRoots({ ...v2('max'), 'proc/meminfo': meminfo(512, 200) }));
  t.like(facts.cgroup, { version: 2, limitBytes: undefined });
  const budget = memoryBudget(facts, { heapMiB: 0 });
  // 25% of 512 is 128, but half of the 200 MiB free is 100.
  t.like(budget, { limitSource: 'meminfo', limitBytes: 512 * MiB, oldSpaceMiB: 100 });
  t.regex(budget.reasons[1]!, /50% of MemAvailable/);
});

test('cgroup v1 memory.limit_in_bytes sets the limit; its "unlimited" is no limit', (t) => {
  const v1 = (limit: string) =>
    fixtureRoots({
      'proc/meminfo': meminfo(3800, 3000),
      'proc/self/cgroup': '5:cpu:/\n4:memory:/edge\n0::/\n',
      'cgroup/memory/edge/memory.limit_in_bytes': `${limit}\n`,
    });
  const limited = readMemoryFacts(v1(String(256 * MiB)));
  t.like(limited.cgroup, { version: 1, limitBytes: 256 * MiB });
  t.like(memoryBudget(limited, { heapMiB: 0 }), { limitSource: 'cgroup v1', oldSpaceMiB: 64 });
  t.is(readMemoryFacts(v1('9223372036854771712')).cgroup?.limitBytes, undefined);
});

test('missing cgroup files fall back to /proc/meminfo, saying why', (t) => {
  const facts = readMemoryFacts(
    fixtureRoots({ 'proc/meminfo': meminfo(1024, 900), 'proc/self/cgroup': '0::/gone\n' }),
  );
  t.is(facts.cgroup, undefined);
  t.regex(facts.fallbacks.join('\n'), /cannot read .*gone\/memory\.max: ENOENT/);
  t.like(memoryBudget(facts, { heapMiB: 0 }), { limitSource: 'meminfo', oldSpaceMiB: 256 });
  const noMembership = readMemoryFacts(fixtureRoots({ 'proc/meminfo': meminfo(1024, 900) }));
  t.regex(noMembership.fallbacks[0]!, /cannot read .*self\/cgroup: ENOENT/);
});

test('an unreadable cgroup file falls back to /proc/meminfo, saying why', (t) => {
  const roots = fixtureRoots({ ...v2('x'), 'proc/meminfo': meminfo(2048, 1500) });
  const maxFile = join(roots.cgroupRoot, 'edge.service', 'memory.max');
  rmSync(maxFile);
  mkdirSync(maxFile); // EISDIR: unreadable even for root
  const facts = readMemoryFacts(roots);
  t.is(facts.cgroup, undefined);
  t.regex(facts.fallbacks.join('\n'), /memory\.max: EISDIR/);
  const garbled = readMemoryFacts(fixtureRoots(v2('lots')));
  t.regex(garbled.fallbacks.join('\n'), /holds "lots", not a byte count/);
});

test('memory.heapMiB overrides the derived old generation', (t) => {
  const facts = readMemoryFacts(fixtureRoots(v2(String(512 * MiB))));
  t.like(memoryBudget(facts, { heapMiB: 200 }), { oldSpaceMiB: 200 });
});

// Child processes run asynchronously: a synchronous one would hold up every test of the file.
const run = promisify(execFile);

test("node started with the budget's flags has the budget's heap ceiling; setFlagsFromString at run time does not", async (t) => {
  const budget = memoryBudget(readMemoryFacts(fixtureRoots(v2(String(512 * MiB)))), {
    heapMiB: 0,
  });
  const limit = async (args: string[], code: string) =>
    Number((await run(process.execPath, [...args, '-e', code], { encoding: 'utf8' })).stdout);
  const heapLimit =
    "process.stdout.write(String(require('v8').getHeapStatistics().heap_size_limit))";
  const [budgeted, late] = await Promise.all([
    limit(budget.nodeFlags, heapLimit),
    limit([], `require('v8').setFlagsFromString('--max-old-space-size=128'); ${heapLimit}`),
  ]);
  t.is(budgeted, expectedHeapLimitBytes(budget));
  t.not(late, expectedHeapLimitBytes(budget));
});

test('node-flags prints the flags of the memory budget for the start script', async (t) => {
  const roots = fixtureRoots(v2(String(512 * MiB)));
  const module = fileURLToPath(new URL('../../src/node-flags.ts', import.meta.url));
  const { stdout } = await run(process.execPath, ['--import', 'tsx', module], {
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH,
      EDGE_MEMORY_PROC_ROOT: roots.procRoot,
      EDGE_MEMORY_CGROUP_ROOT: roots.cgroupRoot,
    },
  });
  t.is(stdout, '--max-old-space-size=128 --max-semi-space-size=2\n');
});

const thresholds = {
  usedEnterPercent: 90,
  usedExitPercent: 80,
  stallEnterPercent: 20,
  stallExitPercent: 5,
  heapEnterPercent: 90,
  heapExitPercent: 75,
};
const smallHeap = () => ({ usedBytes: 10 * MiB, limitBytes: 100 * MiB });

test('pressure starts at the enter threshold and ends only below the exit one, one event each', async (t) => {
  const source = new SimulatedMemorySource({
    usedBytes: 0,
    limitBytes: 512 * MiB,
    stallPercent: undefined,
    source: 'meminfo',
  });
  const monitor = new MemoryPressureMonitor(source, thresholds, smallHeap);
  const changes: PressureChange[] = [];
  monitor.on('change', (change: PressureChange) => changes.push(change));
  const levels: string[] = [];
  for (const percent of [50, 89, 91, 95, 85, 81, 79, 85, 89]) {
    source.setUsedPercent(percent);
    levels.push((await monitor.check()).level);
  }
  t.deepEqual(levels, [
    'normal',
    'normal',
    'high',
    'high',
    'high',
    'high',
    'normal',
    'normal',
    'normal',
  ]);
  t.deepEqual(
    changes.map((change) => change.level),
    ['high', 'normal'],
  );
  t.regex(changes[0]!.sample.causes[0]!, /memory 91\.0% used/);
});

test('PSI stalls and a heap near its ceiling are pressure too', async (t) => {
  const source = new SimulatedMemorySource({
    usedBytes: 100 * MiB,
    limitBytes: 512 * MiB,
    stallPercent: 25,
    source: 'cgroup v2',
  });
  let heap = smallHeap();
  const monitor = new MemoryPressureMonitor(source, thresholds, () => heap);
  t.deepEqual((await monitor.check()).causes, ['PSI some avg10 25%']);
  source.reading.stallPercent = 10; // above exit (5): still high
  t.true((await monitor.check()).level === 'high');
  source.reading.stallPercent = 1;
  t.false((await monitor.check()).level === 'high');
  heap = { usedBytes: 95 * MiB, limitBytes: 100 * MiB };
  t.regex((await monitor.check()).causes.join(), /V8 heap 95\.0% of its ceiling/);
});

test('the kernel source reads cgroup v2 use and PSI, and falls back to meminfo once with a reason', async (t) => {
  const roots = fixtureRoots(v2(String(512 * MiB)));
  const facts = readMemoryFacts(roots);
  const reasons: string[] = [];
  const source = new KernelMemorySource(roots, facts.cgroup, (reason) => reasons.push(reason));
  t.deepEqual(await source.read(), {
    usedBytes: 400 * MiB,
    limitBytes: 512 * MiB,
    stallPercent: 12.5,
    source: 'cgroup v2',
  });
  rmSync(join(roots.cgroupRoot, 'edge.service', 'memory.current'));
  t.like(await source.read(), { source: 'meminfo', limitBytes: 3800 * MiB });
  await source.read();
  t.is(reasons.length, 1);
  t.regex(reasons[0]!, /memory\.current: ENOENT; using meminfo/);
});

// ---- load shedding under memory pressure ----

async function squeezableServer() {
  const source = new SimulatedMemorySource({
    usedBytes: 100 * MiB,
    limitBytes: 512 * MiB,
    stallPercent: undefined,
    source: 'meminfo',
  });
  const app = await runtimeTestServer({ runtime: { pressureSource: source } });
  await app.ready();
  return { app, source };
}

test('under memory pressure a non-essential route answers 503 with Retry-After; /healthz answers', async (t) => {
  const { app, source } = await squeezableServer();
  t.teardown(() => app.close());
  const before = await app.inject('/api/v1/firmware/boot');
  t.not(before.json<{ code?: string }>().code, 'MEMORY_PRESSURE');

  source.setUsedPercent(95);
  await app.memoryPressure.check();
  t.true(app.memoryPressure.isHigh());
  const shed = await app.inject('/api/v1/firmware/boot');
  t.is(shed.statusCode, 503);
  t.is(shed.headers['retry-after'], '5');
  t.like(shed.json(), { code: 'MEMORY_PRESSURE' });
  t.is((await app.inject('/healthz')).statusCode, 200);
  t.is((await app.inject('/readyz')).statusCode, 200);
  const metrics = await app.inject('/metrics');
  t.is(metrics.statusCode, 200);
  t.regex(metrics.body, /^edge_memory_pressure 1$/m);
  t.regex(metrics.body, /^edge_requests_shed_total\{route="\/api\/v1\/firmware\/boot"\} 1$/m);
});

test('below the exit threshold every route answers again, without a restart', async (t) => {
  const { app, source } = await squeezableServer();
  t.teardown(() => app.close());
  source.setUsedPercent(95);
  await app.memoryPressure.check();
  source.setUsedPercent(85); // between exit and enter: still shedding
  await app.memoryPressure.check();
  t.is((await app.inject('/api/v1/firmware/boot')).statusCode, 503);
  source.setUsedPercent(60);
  await app.memoryPressure.check();
  t.false(app.memoryPressure.isHigh());
  const after = await app.inject('/api/v1/firmware/boot');
  t.not(after.json<{ code?: string }>().code, 'MEMORY_PRESSURE');
  const metrics = (await app.inject('/metrics')).body;
  t.regex(metrics, /^edge_memory_pressure 0$/m);
  t.regex(metrics, /^edge_memory_pressure_changes_total\{level="high"\} 1$/m);
  t.regex(metrics, /^edge_memory_pressure_changes_total\{level="normal"\} 1$/m);
});

test('/metrics exports the memory budget and the heap ceiling in effect', async (t) => {
  const { app } = await squeezableServer();
  t.teardown(() => app.close());
  // Garbage enough for a scavenge, which the GC observer reports a moment later.
  let kept = 0;
  for (let i = 0; i < 200_000; i++) kept += [i, i + 1].length;
  t.true(kept > 0);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const metrics = (await app.inject('/metrics')).body;
  t.regex(metrics, /^edge_memory_limit_bytes\{source="(meminfo|cgroup v[12])"\} \d+$/m);
  t.regex(metrics, /^edge_heap_budget_bytes\{space="old"\} \d+$/m);
  t.regex(metrics, /^edge_v8_heap_size_limit_bytes \d+$/m);
  t.regex(metrics, /^edge_event_loop_utilization [\d.e-]+$/m);
  t.regex(metrics, /^nodejs_gc_duration_seconds_bucket\{le="0.0005",kind="\w+"\} \d+$/m);
});
