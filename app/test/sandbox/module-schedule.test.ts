import test from 'ava';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Scheduler, type TaskStats } from '../../src/runtime/scheduler.js';
import { ModuleTrap } from '../../src/sandbox/errors.js';
import { parseManifest } from '../../src/sandbox/manifest.js';
import type { ModuleInstance } from '../../src/sandbox/module-instance.js';
import type { ModuleRegistry } from '../../src/sandbox/module-registry.js';
import { ModuleSchedules } from '../../src/sandbox/module-schedule.js';
import type { CallInput } from '../../src/sandbox/protocol.js';
import { testServer } from '../helpers.js';
import { FakeClock } from '../runtime/fake-clock.js';
import { buildExample } from '../sdk/module-host.js';
import { failsWith, manifestFor, memoryLog, testRegistry, wat } from './sandbox-helpers.js';

// Module exports the host calls on a schedule (manifest `schedule`): the manifest's rules, the
// load's checks, the tasks a load, a replacement and an unload leave, failures, and /metrics.

/**
 * Counters behind exports: `tick` and `tock` count their calls, `ticks` and `tocks` tell; `slow`
 * ticks, then spins for 150 M iterations (about 40 ms on a PC, always over a 10 ms period).
 */
function clockWat(version = 1): string {
  return `(module
  (memory (export "memory") 1 1)
  (global $ticks (mut i32) (i32.const 0))
  (global $tocks (mut i32) (i32.const 0))
  (global (export "a_global") i32 (i32.const 0))
  (func (export "version") (result i32) (i32.const ${version}))
  (func (export "tick") (global.set $ticks (i32.add (global.get $ticks) (i32.const 1))))
  (func (export "tock") (global.set $tocks (i32.add (global.get $tocks) (i32.const 1))))
  (func (export "ticks") (result i32) (global.get $ticks))
  (func (export "tocks") (result i32) (global.get $tocks))
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "trap") (unreachable))
  (func (export "slow") (local $n i32)
    (global.set $ticks (i32.add (global.get $ticks) (i32.const 1)))
    (local.set $n (i32.const 150000000))
    (block $done (loop $next
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $next))))
)`;
}
const clock1 = wat(clockWat(1));
const clock2 = wat(clockWat(2));
const noArgs: CallInput = { kind: 'args', args: [] };

const every = (exportName: string, everyMs: number, overrun?: string) => ({
  export: exportName,
  everyMs,
  ...(overrun ? { overrun } : {}),
});

function schedulerRegistry(
  deps: { shedding?: () => boolean } = {},
  limits: Parameters<typeof testRegistry>[0] = {},
) {
  const scheduler = new Scheduler();
  const registry = testRegistry(limits, { scheduler, ...deps });
  const tasks = () =>
    scheduler
      .stats()
      .map((task) => task.name)
      .sort();
  const task = (name: string): TaskStats | undefined =>
    scheduler.stats().find((stats) => stats.name === name);
  return { scheduler, registry, tasks, task };
}

async function counter(registry: ModuleRegistry, module: string, exportName: string) {
  return (await registry.call(module, exportName, noArgs)).value as number;
}

/** Polls until `check` holds (a few ms apart), for at most `ms`. */
async function until(check: () => boolean | Promise<boolean>, ms = 2000): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return check();
}

// ---- the manifest and the load ----

test('schedule: up to 8 exports, 10 ms to 24 h, overrun skip by default; the rest refused', (t) => {
  const base = manifestFor('clock', clock1);
  const parse = (schedule: unknown) => parseManifest({ ...base, schedule });
  t.is(parseManifest(base).schedule, undefined, 'optional');
  t.deepEqual(parse([every('tick', 10), every('tock', 86_400_000, 'catch-up')]).schedule, [
    { export: 'tick', everyMs: 10, overrun: 'skip' },
    { export: 'tock', everyMs: 86_400_000, overrun: 'catch-up' },
  ]);
  t.is(parse(Array.from({ length: 8 }, (_, i) => every(`e${i}`, 1000))).schedule?.length, 8);
  const refused: Array<[unknown, RegExp]> = [
    [[every('tick', 9)], /^schedule\.0\.everyMs: must be >= 10$/],
    [[every('tick', 86_400_001)], /^schedule\.0\.everyMs: must be <= 86400000$/],
    [[every('tick', 10.5)], /^schedule\.0\.everyMs: must be integer$/],
    [[every('tick', 100, 'later')], /overrun: must be equal to one of .* \(skip, catch-up\)$/],
    [
      [{ ...every('tick', 100), priority: 99 }],
      /^schedule\.0: .*additional properties \(priority\)/,
    ],
    [[every('', 100)], /^schedule\.0\.export: must NOT have fewer than 1 characters$/],
    [[every('x'.repeat(257), 100)], /^schedule\.0\.export: must NOT have more than 256/],
    [[{ everyMs: 100 }], /required property 'export'/],
    [Array.from({ length: 9 }, (_, i) => every(`e${i}`, 1000)), /more than 8 items/],
    [
      [every('tick', 100), every('tock', 100), every('tick', 5000)],
      /^schedule\.2: export tick is scheduled twice$/,
    ],
    [{ export: 'tick', everyMs: 100 }, /^schedule: must be array$/],
  ];
  for (const [schedule, message] of refused) {
    t.throws(() => parse(schedule), { name: 'ManifestError', message }, JSON.stringify(schedule));
  }
});

test("the device's floor (modules.minScheduleMs) refuses a schedule more frequent; the listing shows it", async (t) => {
  const { registry, tasks } = schedulerRegistry({}, { minScheduleMs: 1000 });
  t.teardown(() => registry.close());
  await failsWith(
    t,
    registry.install(manifestFor('clock', clock1, { schedule: [every('tick', 100)] }), clock1),
    'MODULE_REFUSED',
    /schedule\.0: every 100 ms is more often than the device allows, every 1000 ms \(modules\.minScheduleMs\)/,
  );
  t.deepEqual(tasks(), []);
  await registry.install(manifestFor('clock', clock1, { schedule: [every('tick', 1000)] }), clock1);
  t.like(registry.list()[0], { schedule: [{ export: 'tick', everyMs: 1000, overrun: 'skip' }] });
});

test('refused at load: a scheduled export the binary lacks, that is not a function, or takes arguments', async (t) => {
  const { registry, tasks } = schedulerRegistry();
  t.teardown(() => registry.close());
  const refuse = (schedule: unknown[], message: RegExp) =>
    failsWith(
      t,
      registry.install(manifestFor('clock', clock1, { schedule }), clock1),
      'MODULE_REFUSED',
      message,
    );
  await refuse(
    [every('tick', 100), every('tack', 100)],
    /^module clock refused: schedule\.1: export "tack" is not exported by the module$/,
  );
  await refuse(
    [every('a_global', 100)],
    /schedule\.0: export "a_global" is a global, not a function/,
  );
  await refuse([every('memory', 100)], /export "memory" is a memory, not a function/);
  await refuse(
    [every('add', 100)],
    /export "add" takes \(i32, i32\); a scheduled export is called with no arguments/,
  );
  await refuse(
    [every('tick', 5)],
    /^module clock refused: manifest: schedule\.0\.everyMs: must be >= 10$/,
  );
  t.deepEqual(registry.list(), []);
  t.deepEqual(tasks(), []);
});

// ---- scheduled calls through the registry ----

test('a scheduled export is called periodically in the module worker, beside API calls', async (t) => {
  const { registry, task } = schedulerRegistry();
  t.teardown(() => registry.close());
  await registry.install(manifestFor('clock', clock1, { schedule: [every('tick', 10)] }), clock1);
  t.true(await until(async () => (await counter(registry, 'clock', 'ticks')) >= 5), 'ticks');
  t.like(await registry.call('clock', 'add', { kind: 'args', args: [2, 3] }), { value: 5 });
  t.is(await counter(registry, 'clock', 'tocks'), 0, 'only the scheduled export');
  const stats = task('module clock tick')!;
  t.like(stats, { thread: 'main', failures: 0 });
  t.true(stats.runs >= 5);
  t.true(stats.maxSeconds >= 0, 'the jitter is recorded');
});

test('a replacement takes over with its own schedule: the old task is gone, never two for one export', async (t) => {
  const { registry, tasks } = schedulerRegistry();
  t.teardown(() => registry.close());
  await registry.install(manifestFor('clock', clock1, { schedule: [every('tick', 10)] }), clock1);
  t.deepEqual(tasks(), ['module clock tick']);
  t.true(await until(async () => (await counter(registry, 'clock', 'ticks')) >= 2));

  await registry.install(
    manifestFor('clock', clock2, { version: '2.0.0', schedule: [every('tock', 10)] }),
    clock2,
  );
  t.deepEqual(tasks(), ['module clock tock']);
  t.is(await counter(registry, 'clock', 'version'), 2);
  t.true(await until(async () => (await counter(registry, 'clock', 'tocks')) >= 3));
  t.is(
    await counter(registry, 'clock', 'ticks'),
    0,
    'the old schedule calls nothing on the new one',
  );

  // Replacements asked at once (serial per name): at most one task for the module all along.
  const replacements = [
    registry.install(manifestFor('clock', clock1, { schedule: [every('tick', 20)] }), clock1),
    registry.install(
      manifestFor('clock', clock2, { schedule: [every('tick', 86_400_000)] }),
      clock2,
    ),
  ];
  let most = 0;
  const watching = setInterval(() => (most = Math.max(most, tasks().length)), 1);
  await Promise.all(replacements);
  clearInterval(watching);
  t.is(most, 1);
  t.deepEqual(tasks(), ['module clock tick']);

  // A replacement that does not load leaves the running module and its schedule alone.
  await failsWith(
    t,
    registry.install(manifestFor('clock', clock2, { schedule: [every('nope', 10)] }), clock2),
    'MODULE_REFUSED',
  );
  t.deepEqual(tasks(), ['module clock tick']);
});

test('unloading removes the tasks (API, release switch, close); other modules keep theirs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edge-schedule-'));
  const { registry, tasks } = schedulerRegistry({}, { dir });
  t.teardown(async () => {
    await registry.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await registry.install(
    manifestFor('api-clock', clock1, { schedule: [every('tick', 10)] }),
    clock1,
  );
  const folder = join(dir, 'dir-clock');
  mkdirSync(folder);
  writeFileSync(join(folder, 'dir-clock.wasm'), clock1);
  const schedule = [every('tick', 10), every('tock', 1000, 'catch-up')];
  writeFileSync(
    join(folder, 'manifest.json'),
    JSON.stringify(manifestFor('dir-clock', clock1, { schedule })),
  );
  t.like(await registry.reloadFromDirectory(), { loaded: ['dir-clock'] });
  t.deepEqual(tasks(), ['module api-clock tick', 'module dir-clock tick', 'module dir-clock tock']);
  t.like(await registry.reloadFromDirectory(), { unchanged: ['dir-clock'] });
  t.is(tasks().length, 3, 'an unchanged module keeps its tasks');

  rmSync(folder, { recursive: true });
  t.like(await registry.reloadFromDirectory(), { removed: ['dir-clock'] });
  t.deepEqual(tasks(), ['module api-clock tick']);
  t.true(await registry.remove('api-clock'));
  t.deepEqual(tasks(), []);

  await registry.install(
    manifestFor('api-clock', clock1, { schedule: [every('tick', 10)] }),
    clock1,
  );
  await registry.close();
  t.deepEqual(tasks(), []);
});

test('a trapping scheduled export stays scheduled: its failures are counted and logged once', async (t) => {
  const { registry, task } = schedulerRegistry();
  t.teardown(() => registry.close());
  await registry.install(manifestFor('trapper', clock1, { schedule: [every('trap', 10)] }), clock1);
  t.true(await until(() => (task('module trapper trap')?.failures ?? 0) >= 5));
  const stats = task('module trapper trap')!;
  t.true(stats.runs >= stats.failures && stats.failures >= 5);
  t.like(registry.info('trapper'), { state: 'running', restarts: 0 });
  t.like(await registry.call('trapper', 'add', { kind: 'args', args: [1, 1] }), { value: 2 });
  const lines = registry.log.lines.filter((line) => line.message.startsWith('scheduled call'));
  t.is(lines.length, 1, 'one line for a minute of the same failure');
  t.like(lines[0], {
    level: 'warn',
    object: { module: 'trapper', export: 'trap', task: 'module trapper trap', code: 'MODULE_TRAP' },
  });
  t.regex(lines[0]!.message, /^scheduled call of trap failed: module trapper trapped: unreachable/);
});

test('under memory pressure no scheduled call is made: each counts as failed; calls resume after', async (t) => {
  let shedding = true;
  const { registry, task } = schedulerRegistry({ shedding: () => shedding });
  t.teardown(() => registry.close());
  await registry.install(manifestFor('clock', clock1, { schedule: [every('tick', 10)] }), clock1);
  t.true(await until(() => (task('module clock tick')?.failures ?? 0) >= 3));
  t.is(await counter(registry, 'clock', 'ticks'), 0);
  shedding = false;
  t.true(await until(async () => (await counter(registry, 'clock', 'ticks')) >= 2));
  const lines = registry.log.lines.filter((line) => line.message.startsWith('scheduled call'));
  t.deepEqual(
    lines.map((line) => [line.level, (line.object as { code?: string }).code, line.message]),
    [
      [
        'warn',
        'MEMORY_PRESSURE',
        'scheduled call of tick failed: memory is short: the scheduled call of clock is shed',
      ],
      ['info', undefined, 'scheduled call of tick succeeds again'],
    ],
  );
});

test('runs do not pile up: a run longer than the period is an overrun, missed deadlines skipped', async (t) => {
  const { registry, task } = schedulerRegistry();
  t.teardown(() => registry.close());
  await registry.install(manifestFor('slow', clock1, { schedule: [every('slow', 10)] }), clock1);
  t.true(await until(() => (task('module slow slow')?.runs ?? 0) >= 3));
  const stats = task('module slow slow')!;
  // Read in the same turn: the count call queues behind the run in flight, if any.
  const calls = await counter(registry, 'slow', 'ticks');
  t.is(calls, stats.runs, 'one call per run, none queued beside it');
  t.log(`${stats.runs} runs, ${stats.overruns} overruns, ${stats.skipped} skipped`);
  t.true(stats.overruns > 0 && stats.skipped > 0);
});

test("a module's task jitter and runs are at /metrics", async (t) => {
  const app = await testServer({});
  app.modules = testRegistry(
    {},
    { scheduler: app.scheduler, metricsRegistry: app.metricsRegistry },
  );
  t.teardown(async () => {
    await app.modules?.close();
    await app.close();
  });
  await app.modules.install(
    manifestFor('clock', clock1, { schedule: [every('tick', 10)] }),
    clock1,
  );
  t.true(
    await until(() =>
      app.scheduler.stats().some((s) => s.name === 'module clock tick' && s.runs >= 3),
    ),
  );
  const metrics = (await app.inject('/metrics')).body;
  for (const quantile of ['0.5', '0.99', '1']) {
    t.regex(
      metrics,
      new RegExp(
        `edge_task_jitter_seconds\\{task="module clock tick",thread="main",quantile="${quantile}"\\} [0-9.e-]+\\n`,
      ),
    );
  }
  t.regex(metrics, /edge_task_runs\{task="module clock tick",outcome="run"\} [1-9]\d*\n/);
  t.regex(metrics, /edge_task_runs\{task="module clock tick",outcome="failed"\} 0\n/);
  // The listing shows the schedule and the quotas as the manifest's schemas describe them.
  const [listed] = (await app.inject('/api/v1/modules')).json<{ modules: unknown[] }>().modules;
  t.like(listed, {
    schedule: [{ export: 'tick', everyMs: 10, overrun: 'skip' }],
    quotas: app.modules.list()[0]!.quotas,
  });
  await app.modules.remove('clock');
  t.notRegex((await app.inject('/metrics')).body, /module clock tick/);
});

test('the sensor-sampler example samples every 60 s', async (t) => {
  const sampler = await buildExample('sensor-sampler');
  const { registry, task } = schedulerRegistry();
  t.teardown(() => registry.close());
  await registry.install(sampler.manifest, sampler.wasm);
  t.like(task('module sensor-sampler sample'), { runs: 0, failures: 0 });
  t.deepEqual(parseManifest(sampler.manifest).schedule, [
    { export: 'sample', everyMs: 60_000, overrun: 'skip' },
  ]);
});

// ---- ModuleSchedules on a clock that moves when told ----

/** An instance whose calls answer what the test says, when it says. */
function fakeInstance(name: string, schedule: unknown[]) {
  const calls: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];
  const manifest = parseManifest({ ...manifestFor(name, clock1), schedule });
  const instance = {
    name,
    prepared: { manifest },
    call: () =>
      new Promise<void>((resolve, reject) => calls.push({ resolve, reject })).then(() => ({
        value: null,
        cpuMs: 0,
      })),
  } as unknown as ModuleInstance;
  return { instance, calls };
}

test('with a fake clock: no overlapping runs, and failures logged on a change of reason or once a minute', async (t) => {
  const clock = new FakeClock();
  const scheduler = new Scheduler({
    clock,
    onError: () => t.fail('the module schedule logs its own'),
  });
  const log = memoryLog();
  const schedules = new ModuleSchedules({ scheduler, log, now: clock.now });
  const { instance, calls } = fakeInstance('fake', [every('tick', 100)]);
  schedules.add(instance);
  t.throws(() => schedules.add(instance), { message: /scheduled already/ });
  const stats = () => scheduler.stats()[0]!;

  await clock.advanceTo(100);
  t.is(calls.length, 1);
  await clock.advanceTo(450);
  t.is(calls.length, 1, 'the run in flight holds the next ones');
  calls[0]!.resolve();
  await clock.advanceTo(450);
  t.like(stats(), { runs: 1, overruns: 1, skipped: 3, failures: 0 });
  await clock.advanceTo(500);
  t.is(calls.length, 2, 'the next deadline ahead');

  const fail = async (error: Error, at: number) => {
    calls.at(-1)!.reject(error);
    await clock.advanceTo(at);
  };
  const trap = new ModuleTrap('fake', 'unreachable');
  await fail(trap, 600);
  for (let at = 700; at <= 60_500; at += 100) await fail(trap, at);
  const warnings = () => log.lines.filter((line) => line.level === 'warn');
  t.is(warnings().length, 1, 'the first failure');
  await fail(trap, 60_600);
  t.is(warnings().length, 2, 'a minute later, the same reason');
  t.like(warnings()[1]!.object, { code: 'MODULE_TRAP', failures: 600 });
  await fail(new Error('boom'), 60_700);
  t.is(warnings().length, 2, 'a new reason within a second of the last line waits');
  await clock.advanceTo(61_600);
  await fail(new Error('boom'), 61_700);
  t.is(warnings().length, 3, 'a new reason');
  t.like(warnings()[2]!.object, { code: 'Error', failures: 2 });
  calls.at(-1)!.resolve();
  await clock.advanceTo(61_800);
  t.deepEqual(
    log.lines.filter((line) => line.level === 'info').map((line) => line.message),
    ['scheduled call of tick succeeds again'],
  );
  t.is(stats().failures, 603);

  await schedules.remove('fake');
  t.deepEqual(scheduler.stats(), []);
  const made = calls.length;
  await clock.advanceTo(100_000);
  t.is(calls.length, made, 'no run after the removal');
});
