import test from 'ava';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { JitterHistogram } from '../../src/runtime/jitter-histogram.js';
import { Scheduler, type SchedulerClock } from '../../src/runtime/scheduler.js';
import { runtimeTestServer } from './runtime-helpers.js';

/** A clock that moves only when told; each timer fires `latenessMs` after it is due. */
class FakeClock implements SchedulerClock {
  time = 0;
  latenessMs = 0;
  #timers: { due: number; callback: () => void }[] = [];

  now = () => this.time;
  setTimer = (callback: () => void, delayMs: number) => {
    const timer = { due: this.time + delayMs, callback };
    this.#timers.push(timer);
    return timer;
  };
  clearTimer = (handle: unknown) => {
    this.#timers = this.#timers.filter((timer) => timer !== handle);
  };

  /** Fires due timers in order until `until`, letting their async runs settle. */
  async advanceTo(until: number): Promise<void> {
    for (;;) {
      this.#timers.sort((a, b) => a.due - b.due);
      const next = this.#timers[0];
      if (!next || next.due + this.latenessMs > until) break;
      this.#timers.shift();
      this.time = Math.max(this.time, next.due + this.latenessMs);
      next.callback();
      for (let i = 0; i < 5; i++) await Promise.resolve();
    }
    this.time = until;
  }
}

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
  const dir = mkdtempSync(join(tmpdir(), 'edge-task-'));
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
  await new Promise((resolve) => setTimeout(resolve, 700));
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
