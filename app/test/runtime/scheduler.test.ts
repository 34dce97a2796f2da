import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { JitterHistogram } from '../../src/runtime/jitter-histogram.js';
import { Scheduler, type WorkerPriority } from '../../src/runtime/scheduler.js';
import { FakeClock } from './fake-clock.js';
import { runtimeTestServer } from './runtime-helpers.js';
import { scratchDir } from '../../../test/scratch.js';

test('a period longer than setTimeout can wait (720 h) does not run at once', async (t) => {
  const scheduler = new Scheduler();
  let runs = 0;
  scheduler.add({
    name: 'rare',
    periodMs: 720 * 3_600_000,
    overrun: 'skip',
    run: () => void runs++,
  });
  await new Promise((resolve) => setTimeout(resolve, 30));
  await scheduler.stop();
  t.is(runs, 0);
});

test('deadlines are absolute: late timers do not add up over hours', async (t) => {
  const clock = new FakeClock();
  clock.latenessMs = 0.4;
  const scheduler = new Scheduler({ clock });
  const runTimes: number[] = [];
  scheduler.add({
    name: 'sensor',
    periodMs: 1000,
    overrun: 'skip',
    run: () => void runTimes.push(clock.time),
  });
  const hours = 2;
  await clock.advanceTo(hours * 3_600_000);
  const [stats] = scheduler.stats();
  // A re-armed relative timer would have lost 0.4 ms per run: 2.9 s over two hours.
  t.is(stats!.runs, hours * 3600 - 1);
  t.true(Math.abs(runTimes.at(-1)! - (hours * 3_600_000 - 1000 + 0.4)) < 1e-6);
  t.is(stats!.overruns, 0);
  t.true(Math.abs(stats!.p99Seconds - 0.0004) < 0.00003);
  await scheduler.stop();
});

test('an overrun skips the missed deadlines, or catches them up, as the task asks', async (t) => {
  for (const overrun of ['skip', 'catch-up'] as const) {
    const clock = new FakeClock();
    const scheduler = new Scheduler({ clock });
    const runTimes: number[] = [];
    scheduler.add({
      name: overrun,
      periodMs: 10,
      overrun,
      run: () => {
        runTimes.push(clock.time);
        if (runTimes.length === 2) clock.time += 35; // the run at 20 ends at 55
      },
    });
    await clock.advanceTo(100);
    const [stats] = scheduler.stats();
    if (overrun === 'skip') {
      // 30, 40 and 50 are dropped; the schedule resumes on its grid at 60.
      t.deepEqual(runTimes, [10, 20, 60, 70, 80, 90, 100]);
      t.like(stats, { overruns: 1, skipped: 3 });
    } else {
      // 30, 40 and 50 run at once, then the grid goes on.
      t.deepEqual(runTimes, [10, 20, 55, 55, 55, 60, 70, 80, 90, 100]);
      t.like(stats, { skipped: 0 });
    }
    await scheduler.stop();
  }
});

test('the jitter histogram answers quantiles within 1/16 of the truth', (t) => {
  const histogram = new JitterHistogram();
  for (let micros = 1; micros <= 10_000; micros++) histogram.recordMs(micros / 1000);
  const p50 = histogram.quantileMicros(0.5);
  const p99 = histogram.quantileMicros(0.99);
  t.true(p50 >= 5000 && p50 <= 5000 * (1 + 1 / 16), `p50 ${p50}`);
  t.true(p99 >= 9900 && p99 <= 9900 * (1 + 1 / 16), `p99 ${p99}`);
  t.is(histogram.summary().maxSeconds, 0.01);
});

test('a task on a worker thread runs on time and reports its jitter', async (t) => {
  const dir = scratchDir('edge-task');
  const module = join(dir, 'task.mjs');
  writeFileSync(module, 'let n = 0;\nexport function sample() { n++; }\n');
  const scheduler = new Scheduler();
  await scheduler.addWorker({
    name: 'precise',
    periodMs: 5,
    overrun: 'skip',
    moduleUrl: pathToFileURL(module).href,
    exportName: 'sample',
  });
  // The worker reports twice a second: at least 50 runs by 700 ms, seen at its first report.
  const deadline = performance.now() + 700;
  while ((scheduler.stats()[0]?.runs ?? 0) < 50 && performance.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 20));
  const [stats] = scheduler.stats();
  await scheduler.stop();
  t.like(stats, { name: 'precise', thread: 'worker', failures: 0 });
  t.true(stats!.runs >= 50, `${stats!.runs} runs`);
});

test('each task jitter p50, p99 and max are at /metrics', async (t) => {
  const app = await runtimeTestServer({});
  t.teardown(() => app.close());
  await app.ready();
  app.scheduler.add({ name: 'sampler', periodMs: 5, overrun: 'skip', run: () => undefined });
  await new Promise((resolve) => setTimeout(resolve, 60));
  const metrics = (await app.inject('/metrics')).body;
  for (const quantile of ['0.5', '0.99', '1'])
    t.regex(
      metrics,
      new RegExp(
        `^edge_task_jitter_seconds\\{task="sampler",thread="main",quantile="${quantile}"\\} [\\d.e-]+$`,
        'm',
      ),
    );
  t.regex(metrics, /^edge_task_runs\{task="sampler",outcome="run"\} [1-9]\d*$/m);
});

/** A module for worker tasks that does nothing, in a folder of its own. */
function noopTaskModule(): string {
  const dir = scratchDir('edge-task');
  const module = join(dir, 'task.mjs');
  writeFileSync(module, 'export function run() {}\n');
  return pathToFileURL(module).href;
}

/** Whether this process may raise a thread to SCHED_FIFO: root (or CAP_SYS_NICE) and chrt. */
function canUseRealtime(): boolean {
  try {
    execFileSync('chrt', ['--max'], { stdio: 'ignore' });
  } catch {
    return false;
  }
  const effective = /^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  const CAP_SYS_NICE = 23n;
  return effective !== null && ((BigInt(`0x${effective[1]}`) >> CAP_SYS_NICE) & 1n) === 1n;
}

test('a realtime worker task gets SCHED_FIFO (reset on fork) for its own thread only, and says so', async (t) => {
  if (!canUseRealtime()) {
    t.log('skipped: SCHED_FIFO needs CAP_SYS_NICE and chrt');
    t.pass();
    return;
  }
  const reported: [string, WorkerPriority][] = [];
  const scheduler = new Scheduler({
    onPriority: (task, priority) => reported.push([task, priority]),
  });
  t.teardown(() => scheduler.stop());
  const priority = await scheduler.addWorker({
    name: 'sampler',
    periodMs: 5,
    overrun: 'skip',
    moduleUrl: noopTaskModule(),
    realtime: 12,
  });
  t.like(priority, { applied: 'SCHED_FIFO 12', refused: [] });
  t.deepEqual(reported, [['sampler', priority]]);
  // The kernel's view of that thread, and of this (main) thread, which stays as it was.
  const policyOf = (tid: number) =>
    execFileSync('chrt', ['--pid', String(tid)], { encoding: 'utf8' });
  t.regex(policyOf(priority.tid!), /policy: SCHED_FIFO\|SCHED_RESET_ON_FORK\n.*priority: 12/s);
  t.regex(policyOf(process.pid), /policy: SCHED_OTHER/);
  t.like(scheduler.stats()[0], { priority: 'SCHED_FIFO 12' });
  // Ordinary tasks ask for nothing and report nothing.
  await scheduler.addWorker({
    name: 'plain',
    periodMs: 5,
    overrun: 'skip',
    moduleUrl: noopTaskModule(),
  });
  t.is(reported.length, 1);
  t.like(scheduler.stats()[1], { priority: 'default' });
});

test('a realtime priority outside 1-99 is refused before a worker starts', async (t) => {
  const scheduler = new Scheduler();
  await t.throwsAsync(
    scheduler.addWorker({
      name: 'bad',
      periodMs: 5,
      overrun: 'skip',
      moduleUrl: noopTaskModule(),
      realtime: 100,
    }),
    { instanceOf: RangeError, message: /1 to 99/ },
  );
  t.deepEqual(scheduler.stats(), []);
});

/**
 * Without CAP_SYS_NICE (root's bounding set without it, as setpriv runs the child), chrt and
 * setpriority answer EPERM/EACCES: the task still runs, at the default priority, and says why.
 */
test('without CAP_SYS_NICE a realtime task falls back to nice, then to the default, with the reasons', async (t) => {
  if (!canUseRealtime()) {
    t.log('skipped: needs root (to drop CAP_SYS_NICE) and util-linux');
    t.pass();
    return;
  }
  const dir = scratchDir('edge-task');
  const script = join(dir, 'child.mts');
  const schedulerUrl = new URL('../../src/runtime/scheduler.ts', import.meta.url).href;
  writeFileSync(
    script,
    `import { Scheduler } from ${JSON.stringify(schedulerUrl)};
const scheduler = new Scheduler();
const priority = await scheduler.addWorker({
  name: 'sampler', periodMs: 5, overrun: 'skip', moduleUrl: ${JSON.stringify(noopTaskModule())}, realtime: true,
});
// The worker reports its counters twice a second: the first report, or 700 ms.
const deadline = performance.now() + 700;
while (scheduler.stats()[0].runs <= 5 && performance.now() < deadline)
  await new Promise((resolve) => setTimeout(resolve, 20));
process.stdout.write(JSON.stringify({ priority, runs: scheduler.stats()[0].runs }));
await scheduler.stop();
`,
  );
  const root = fileURLToPath(new URL('../../..', import.meta.url));
  const { stdout } = await promisify(execFile)(
    'setpriv',
    ['--bounding-set=-sys_nice', process.execPath, '--import', 'tsx', script],
    { cwd: root, encoding: 'utf8' },
  );
  const { priority, runs } = JSON.parse(stdout) as { priority: WorkerPriority; runs: number };
  t.is(priority.applied, 'default');
  t.is(priority.refused.length, 2);
  t.regex(
    priority.refused[0]!,
    /^SCHED_FIFO 10: .*Operation not permitted \(needs root or CAP_SYS_NICE\)$/,
  );
  t.regex(priority.refused[1]!, /^nice -20: .*(EACCES|EPERM).*\(needs root or CAP_SYS_NICE\)$/);
  t.true(runs > 5, `${runs} runs`);
});

test('the edge server logs once which priority a worker task got', async (t) => {
  if (!canUseRealtime()) {
    t.log('skipped: SCHED_FIFO needs CAP_SYS_NICE and chrt');
    t.pass();
    return;
  }
  const app = await runtimeTestServer({});
  t.teardown(() => app.close());
  await app.ready();
  const lines: string[] = [];
  app.log.info = ((fields: object, message: string) => {
    lines.push(`${message} ${JSON.stringify(fields)}`);
  }) as unknown as typeof app.log.info;
  const { tid } = await app.scheduler.addWorker({
    name: 'sampler',
    periodMs: 10,
    overrun: 'skip',
    moduleUrl: noopTaskModule(),
    realtime: true,
  });
  t.deepEqual(lines, [
    `task sampler: worker thread at SCHED_FIFO 10 {"task":"sampler","tid":${tid},"priority":"SCHED_FIFO 10"}`,
  ]);
});
