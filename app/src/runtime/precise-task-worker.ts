/** What the scheduler hands a precise task's worker. */
export interface PreciseWorkerData {
  periodMs: number;
  overrun: 'skip' | 'catch-up';
  maxCatchUp: number;
  moduleUrl: string;
  exportName: string;
  /** SCHED_FIFO priority (1-99) to ask for, else undefined. */
  realtimePriority: number | undefined;
  /** The nice value to ask for (alone, or when SCHED_FIFO is refused), else undefined. */
  niceness: number | undefined;
}

/** The scheduling a worker thread got, and why it got less than it asked for. */
export interface WorkerPriority {
  /** The kernel thread id (for chrt -p, ps -L, /proc/PID/task/TID). */
  tid: number | undefined;
  /** 'SCHED_FIFO 10', 'nice -20' or 'default'. */
  applied: string;
  /** One reason per attempt that was refused, e.g. chrt's "Operation not permitted". */
  refused: string[];
}

/**
 * The source of a precise task's worker thread (run with `eval: true`). Plain JavaScript text,
 * not a function of ours turned into text: tsx and esbuild add helpers to functions that
 * would not exist in the worker. The deadline logic is MainThreadRunner's (scheduler.ts).
 *
 * Each wait sleeps on a timer until a margin before the deadline, then blocks in Atomics.wait
 * for the rest: libuv timers have millisecond granularity, a futex wait has microseconds, and
 * the thread spins on nothing (a futex sleep: at SCHED_FIFO it takes CPU only while the task
 * runs). Lateness goes to the main thread in batches, twice a second.
 */
export const PRECISE_TASK_WORKER_SOURCE = String.raw`
const { parentPort: port, workerData: data } = require('node:worker_threads');
// Timer wake-ups can come a millisecond or two late under load: wake this early, then block.
const MARGIN_MS = 2;
const REPORT_EVERY_MS = 500;
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const counters = { runs: 0, overruns: 0, skipped: 0, failures: 0 };
let lateness = [];
let lastReport = performance.now();

function report() {
  port.postMessage({ type: 'report', latenessMs: Float64Array.from(lateness), counters });
  lateness = [];
  lastReport = performance.now();
}

async function waitUntil(deadline) {
  const coarse = deadline - performance.now() - MARGIN_MS;
  if (coarse > 0) await new Promise((resolve) => setTimeout(resolve, coarse));
  const rest = deadline - performance.now();
  if (rest > 0) Atomics.wait(sleeper, 0, 0, rest);
}

// Scheduling policy and nice value are per thread on Linux: this thread's id ends /proc/thread-self.
function threadId() {
  return Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
}

function withPrivilegeHint(text) {
  return /not permitted|EPERM|EACCES|permission denied/i.test(text)
    ? text + ' (needs root or CAP_SYS_NICE)'
    : text;
}

/**
 * SCHED_FIFO through util-linux's chrt (node has no sched_setscheduler), reset on fork so that
 * processes the task starts do not inherit it; else the nice value; else the default.
 */
function raisePriority() {
  const refused = [];
  if (data.realtimePriority === undefined && data.niceness === undefined) {
    return { tid: undefined, applied: 'default', refused };
  }
  let tid;
  try {
    tid = threadId();
  } catch (error) {
    refused.push('no thread id from /proc/thread-self: ' + error.message);
    return { tid: undefined, applied: 'default', refused };
  }
  if (data.realtimePriority !== undefined) {
    const policy = 'SCHED_FIFO ' + data.realtimePriority;
    const chrt = require('node:child_process').spawnSync(
      'chrt',
      ['--fifo', '--reset-on-fork', '--pid', String(data.realtimePriority), String(tid)],
      { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'], timeout: 5000 },
    );
    if (chrt.status === 0) return { tid, applied: policy, refused };
    const why = chrt.error
      ? chrt.error.code === 'ENOENT'
        ? 'no chrt (util-linux) on PATH'
        : chrt.error.message
      : (chrt.stderr || '').trim() || 'chrt exited with status ' + chrt.status;
    refused.push(policy + ': ' + withPrivilegeHint(why));
  }
  if (data.niceness !== undefined) {
    try {
      require('node:os').setPriority(tid, data.niceness);
      return { tid, applied: 'nice ' + data.niceness, refused };
    } catch (error) {
      refused.push('nice ' + data.niceness + ': ' + withPrivilegeHint(error.message));
    }
  }
  return { tid, applied: 'default', refused };
}

async function main() {
  port.postMessage({ type: 'priority', priority: raisePriority() });
  const exported = await import(data.moduleUrl);
  const run = exported[data.exportName];
  if (typeof run !== 'function') {
    throw new Error(data.moduleUrl + ' exports no function ' + data.exportName);
  }
  port.postMessage({ type: 'started' });
  const origin = performance.now();
  let index = 1;
  for (;;) {
    const deadline = origin + index * data.periodMs;
    await waitUntil(deadline);
    lateness.push(performance.now() - deadline);
    counters.runs++;
    try {
      await run();
    } catch (error) {
      counters.failures++;
      port.postMessage({ type: 'error', message: String((error && error.stack) || error) });
    }
    index++;
    const late = performance.now() - (origin + index * data.periodMs);
    if (late >= 0) {
      counters.overruns++;
      const missed = Math.floor(late / data.periodMs) + 1;
      const catchUp = data.overrun === 'catch-up' ? Math.min(missed, data.maxCatchUp) : 0;
      counters.skipped += missed - catchUp;
      index += missed - catchUp;
    }
    if (performance.now() - lastReport >= REPORT_EVERY_MS) report();
  }
}

main().catch((error) => {
  port.postMessage({ type: 'error', message: String((error && error.stack) || error) });
  process.exit(1);
});
`;
