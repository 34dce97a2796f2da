import test, { type ExecutionContext } from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { Worker } from 'node:worker_threads';
import { Registry } from 'prom-client';
import { cpuBudgetMs, ModuleInstance, wallBackstopMs } from '../../src/sandbox/module-instance.js';
import { ModuleLogBudget } from '../../src/sandbox/module-log-budget.js';
import { ModuleMetrics } from '../../src/sandbox/module-metrics.js';
import { prepareModule } from '../../src/sandbox/module-package.js';
import { currentThreadId, ownThreadCpuClock, threadCpuMs } from '../../src/sandbox/thread-cpu.js';
import { workerSources } from '../../src/sandbox/worker-source.js';
import { failsWith, guestWat, manifestFor, memoryLog, testLimits, wat } from './sandbox-helpers.js';

// The CPU quota counts the CPU time of the module's worker thread (/proc schedstat), with a
// wall-time backstop. A starved worker is made for real: its thread is pinned to one CPU beside
// a spinning process, at a lower priority. Serial: the tests time calls and load a CPU.

const guest = wat(guestWat());
const args = (...values: number[]) => ({ kind: 'args', args: values }) as const;

/** One module instance, as the registry makes it, with its thread id at hand. */
async function startInstance(t: ExecutionContext, cpuMsPerCall: number) {
  const limits = testLimits();
  const manifest = manifestFor('quota', guest, { quotas: { cpuMsPerCall, memoryBytes: 1 << 20 } });
  const prepared = await prepareModule(manifest, guest, limits, new Map());
  const log = memoryLog();
  const metrics = new ModuleMetrics();
  const instance = new ModuleInstance(prepared, {
    limits,
    sources: await workerSources(),
    metrics,
    log,
    moduleLog: new ModuleLogBudget(1000, log, metrics.logDropped),
    uplink: undefined,
    admit: () => undefined,
  });
  await instance.start();
  t.teardown(() => instance.stop());
  const metricsText = async () => {
    const registry = new Registry();
    metrics.registerIn(registry);
    return registry.metrics();
  };
  return { instance, metricsText };
}

/**
 * Pins thread `tid` to one CPU beside a process that spins there, and lowers its priority
 * (a nice value, or SCHED_IDLE): the thread gets a small share of that CPU, as on a loaded Pi.
 */
async function starve(t: ExecutionContext, tid: number, priority: number | 'idle'): Promise<void> {
  const allowed = /Cpus_allowed_list:\s*(\d+)/.exec(
    readFileSync(`/proc/self/task/${tid}/status`, 'latin1'),
  );
  const cpu = allowed?.[1] ?? '0';
  const hog = spawn('taskset', ['--cpu-list', cpu, 'sh', '-c', 'while :; do :; done'], {
    stdio: 'ignore',
  });
  t.teardown(() => void hog.kill('SIGKILL'));
  // Wait until it spins (taskset has exec'd sh and sh has run a little).
  const spinning = Date.now() + 2000;
  while ((procCpuMs(hog.pid!) ?? 0) < 5 && Date.now() < spinning) await sleep(5);
  execFileSync('taskset', ['--pid', '--cpu-list', cpu, String(tid)], { stdio: 'ignore' });
  if (priority === 'idle') execFileSync('chrt', ['--idle', '--pid', '0', String(tid)]);
  else setPriority(tid, priority);
}

function procCpuMs(pid: number): number | undefined {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'latin1').split(' ')[0]) / 1e6;
  } catch {
    return undefined;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test.serial('a module spinning forever is stopped by its CPU quota, promptly', async (t) => {
  const quota = 50;
  const { instance, metricsText } = await startInstance(t, quota);
  t.truthy(instance.threadId, 'the worker told its thread id');
  const quick = await instance.call('add', args(1, 2));
  t.is(quick.value, 3);
  t.true(quick.cpuMs >= 0 && quick.cpuMs < 5, `a quick call is charged ${quick.cpuMs} ms`);
  // The CPU the worker thread has used, sampled while it spins: when it passed the budget.
  const tid = instance.threadId!;
  const cpuAtStart = threadCpuMs(tid)!;
  let overBudgetAt: number | undefined;
  const sampler = setInterval(() => {
    const cpu = threadCpuMs(tid);
    if (cpu !== undefined && cpu - cpuAtStart >= cpuBudgetMs(quota))
      overBudgetAt ??= performance.now();
  }, 2);
  const started = performance.now();
  await failsWith(
    t,
    instance.call('spin', args()),
    'MODULE_CPU_QUOTA',
    /ran over its CPU quota of 50 ms per call/,
  );
  const stoppedAt = performance.now();
  clearInterval(sampler);
  const elapsed = stoppedAt - started;
  t.log(
    `stopped after ${elapsed.toFixed(1)} ms (CPU budget ${cpuBudgetMs(quota)} ms), ` +
      `${overBudgetAt === undefined ? 'before the sampler saw' : (stoppedAt - overBudgetAt).toFixed(1) + ' ms after'} it passed its budget`,
  );
  // A thread uses no more CPU than wall time; on a busy machine it takes longer to use it.
  t.true(elapsed >= cpuBudgetMs(quota) - 1 && elapsed < 1000, `stopped after ${elapsed} ms`);
  // Promptly: a scheduler tick (the figure's lag) and the timers' latency.
  t.true(overBudgetAt === undefined || stoppedAt - overBudgetAt < 50, 'soon after its budget');
  t.regex(instance.lastFailure ?? '', /a call of spin ran over 50 ms/);
  const text = await metricsText();
  t.regex(text, /edge_module_quota_refusals_total\{module="quota",quota="cpu"\} 1/);
  t.regex(text, /edge_module_call_errors_total\{module="quota",kind="cpu_quota"\} 1/);
});

test.serial(
  'a call under its CPU quota but over it in wall time, its thread starved, completes',
  async (t) => {
    const quota = 50;
    const { instance, metricsText } = await startInstance(t, quota);
    // How many loop turns take about 15 ms of CPU here (the second call: after V8's tier-up).
    let turns = 1_000_000;
    for (let round = 0; round < 3; round++) {
      const { cpuMs } = await instance.call('busy', args(turns));
      turns = Math.min(2 ** 31 - 1, Math.round((turns * 15) / Math.max(cpuMs, 0.1)));
    }
    await starve(t, instance.threadId!, 10);
    const started = performance.now();
    const result = await instance.call('busy', args(turns));
    const elapsed = performance.now() - started;
    t.log(`${result.cpuMs.toFixed(1)} ms of CPU in ${elapsed.toFixed(0)} ms of wall time`);
    t.is(result.value, 1);
    t.true(result.cpuMs > 5 && result.cpuMs < quota, `charged ${result.cpuMs} ms of CPU`);
    t.true(elapsed > cpuBudgetMs(quota), 'the wall-time watchdog would have stopped it');
    t.is(instance.state, 'running');
    t.is(instance.restarts, 0);
    t.notRegex(await metricsText(), /edge_module_call_errors_total\{/);
  },
);

test.serial(
  'the wall-time backstop ends a call that gets no CPU, with its own reason',
  async (t) => {
    const quota = 10;
    const { instance, metricsText } = await startInstance(t, quota);
    await starve(t, instance.threadId!, 'idle');
    const started = performance.now();
    await failsWith(
      t,
      instance.call('spin', args()),
      'MODULE_CRASHED',
      /a call of spin was stuck for \d+ ms of wall time \(\d+ ms of CPU\)/,
    );
    const elapsed = performance.now() - started;
    t.log(`ended after ${elapsed.toFixed(0)} ms (backstop ${wallBackstopMs(quota)} ms)`);
    t.true(elapsed >= wallBackstopMs(quota) - 1 && elapsed < wallBackstopMs(quota) + 300);
    t.regex(instance.lastFailure ?? '', /stuck/);
    const text = await metricsText();
    t.regex(text, /edge_module_call_errors_total\{module="quota",kind="stuck"\} 1/);
    t.notRegex(text, /quota="cpu"/);
    // It restarts as after any failure, and serves.
    t.like(await instance.call('add', args(2, 2)), { value: 4 });
  },
);

test.serial(
  'threadCpuMs reads a thread’s CPU time; undefined for a thread that is not there',
  async (t) => {
    const worker = new Worker(
      `const { parentPort } = require('node:worker_threads');
     const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
     parentPort.on('message', (ms) => {
       const end = performance.now() + ms;
       while (performance.now() < end);
       parentPort.postMessage(tid);
     });`,
      { eval: true },
    );
    t.teardown(() => worker.terminate());
    const spin = (ms: number) =>
      new Promise<number>((resolve) => {
        worker.once('message', resolve);
        worker.postMessage(ms);
      });
    const tid = await spin(0);
    const before = threadCpuMs(tid);
    t.true(before !== undefined && before > 0, `${before}`);
    const wallStart = performance.now();
    await spin(60);
    const wall = performance.now() - wallStart;
    const used = threadCpuMs(tid)! - before!;
    t.log(`a 60 ms spin: ${used.toFixed(1)} ms of CPU in ${wall.toFixed(1)} ms`);
    // Not more than the wall time (a tick of lag aside), less when the machine is busy.
    t.true(used > 5 && used <= wall + 5, `${used} ms`);
    await worker.terminate();
    t.is(threadCpuMs(tid), undefined, 'a worker that ended');
    t.is(threadCpuMs(2 ** 22 + 1), undefined, 'over the kernel’s largest pid');

    // The calling thread's own clock: exact, not a tick behind.
    const own = ownThreadCpuClock();
    t.truthy(own);
    t.is(typeof currentThreadId(), 'number');
    const start = own!();
    const wallAtStart = performance.now();
    while (performance.now() < wallAtStart + 2);
    const spent = own!() - start;
    const spentWall = performance.now() - wallAtStart;
    t.true(spent > 0 && spent <= spentWall + 0.1, `${spent} ms of CPU in ${spentWall} ms`);
  },
);
