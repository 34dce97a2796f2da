/** What the scheduler hands a precise task's worker. */
export interface PreciseWorkerData {
  periodMs: number;
  overrun: 'skip' | 'catch-up';
  maxCatchUp: number;
  moduleUrl: string;
  exportName: string;
  niceness: number | undefined;
}

/**
 * The source of a precise task's worker thread (run with `eval: true`). Plain JavaScript text,
 * not a function of ours turned into text: tsx and esbuild add helpers to functions that
 * would not exist in the worker. The deadline logic is MainThreadRunner's (scheduler.ts).
 *
 * Each wait sleeps on a timer until a margin before the deadline, then blocks in Atomics.wait
 * for the rest: libuv timers have millisecond granularity, a futex wait has microseconds, and
 * the thread spins on nothing. Lateness goes to the main thread in batches, twice a second.
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

/** Linux nice values are per thread: this thread's id is the last part of /proc/thread-self. */
function setNiceness() {
  if (data.niceness === undefined) return;
  try {
    const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
    require('node:os').setPriority(tid, data.niceness);
  } catch (error) {
    port.postMessage({ type: 'error', message: 'cannot set niceness ' + data.niceness + ': ' + error.message });
  }
}

async function main() {
  setNiceness();
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
