import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { JitterHistogram, type JitterSummary } from './jitter-histogram.js';
import {
  PRECISE_TASK_WORKER_SOURCE,
  type PreciseWorkerData,
  type WorkerPriority,
} from './precise-task-worker.js';

export type { WorkerPriority } from './precise-task-worker.js';

/** What to do when a run ends after the next deadline: drop the missed runs, or run them now. */
export type OverrunPolicy = 'skip' | 'catch-up';

export interface PeriodicTask {
  name: string;
  periodMs: number;
  overrun: OverrunPolicy;
  /** catch-up runs at most this many missed runs back to back, and skips the rest. */
  maxCatchUp?: number;
  run(): void | Promise<void>;
  /** Told of a failed run instead of the scheduler's onError (a module's schedule rate-limits its lines). */
  onError?: (error: unknown) => void;
}

/** A task in a worker thread of its own, timed there: for periods the main loop cannot hold. */
export interface WorkerTask {
  name: string;
  periodMs: number;
  overrun: OverrunPolicy;
  maxCatchUp?: number;
  /** An ES module (file: URL) whose export `exportName` (default "run") is called each period. */
  moduleUrl: string;
  exportName?: string;
  /**
   * SCHED_FIFO for the worker thread, so that the kernel runs it before any ordinary thread on
   * a busy CPU: true (priority DEFAULT_REALTIME_PRIORITY) or a priority 1-99. Needs root or
   * CAP_SYS_NICE and chrt; refused, the thread gets `niceness` (default -20 then). Off by default.
   */
  realtime?: boolean | number;
  /** The worker thread's nice value (negative needs root or CAP_SYS_NICE); alone, or realtime's fallback. */
  niceness?: number;
}

/** A monotonic clock in milliseconds and a one-shot timer: real ones, or a test's. */
export interface SchedulerClock {
  now(): number;
  setTimer(callback: () => void, delayMs: number): unknown;
  clearTimer(handle: unknown): void;
}

export const realClock: SchedulerClock = {
  now: () => performance.now(),
  // Unref'd: a periodic task never keeps a process alive on its own (servers and tests end
  // when their real work does), as the worker tasks' threads do not.
  setTimer: (callback, delayMs) => setTimeout(callback, delayMs).unref(),
  clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface TaskStats extends JitterSummary {
  name: string;
  thread: 'main' | 'worker';
  /** A worker thread's scheduling ('SCHED_FIFO 10', 'nice -20', 'default'); the main thread's is the process's. */
  priority?: string;
  runs: number;
  /** Runs that ended after the next deadline. */
  overruns: number;
  /** Deadlines dropped by skip (or past catch-up's limit). */
  skipped: number;
  failures: number;
}

const DEFAULT_MAX_CATCH_UP = 10;
/** Above every ordinary thread, below the kernel's own (irq threads 50, watchdogs 99). */
export const DEFAULT_REALTIME_PRIORITY = 10;
/** What a realtime task gets when SCHED_FIFO is refused: the highest nice priority. */
const REALTIME_FALLBACK_NICENESS = -20;
/** The longest delay setTimeout takes (2^31 - 1 ms). */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/**
 * Runs periodic tasks at absolute deadlines (start + k x period, so no drift however long it
 * runs), records each run's distance from its deadline, and applies the task's overrun policy.
 */
export class Scheduler {
  readonly #clock: SchedulerClock;
  readonly #onError: (task: string, error: unknown) => void;
  readonly #onPriority: (task: string, priority: WorkerPriority) => void;
  readonly #tasks = new Map<string, { stats: () => TaskStats; stop: () => Promise<void> }>();

  constructor(
    options: {
      clock?: SchedulerClock;
      onError?: (task: string, error: unknown) => void;
      /** Once per worker task that asked for a priority: what it got, and what was refused. */
      onPriority?: (task: string, priority: WorkerPriority) => void;
    } = {},
  ) {
    this.#clock = options.clock ?? realClock;
    this.#onError = options.onError ?? (() => undefined);
    this.#onPriority = options.onPriority ?? (() => undefined);
  }

  /** Starts a task on the main thread; its first run is one period from now. */
  add(task: PeriodicTask): void {
    this.#claim(task.name, task.periodMs);
    const runner = new MainThreadRunner(
      task,
      this.#clock,
      task.onError ?? ((error) => this.#onError(task.name, error)),
    );
    this.#tasks.set(task.name, { stats: () => runner.stats(), stop: async () => runner.stop() });
    runner.start();
  }

  /**
   * Starts a task in a dedicated worker thread; resolves, with the scheduling the thread got,
   * once the worker has loaded the task.
   */
  async addWorker(task: WorkerTask): Promise<WorkerPriority> {
    this.#claim(task.name, task.periodMs);
    const realtimePriority = realtimePriorityOf(task);
    const runner = new WorkerRunner(
      task,
      realtimePriority,
      (error) => this.#onError(task.name, error),
      (priority) => {
        if (realtimePriority !== undefined || task.niceness !== undefined)
          this.#onPriority(task.name, priority);
      },
    );
    this.#tasks.set(task.name, { stats: () => runner.stats(), stop: () => runner.stop() });
    await runner.started;
    return runner.priority;
  }

  stats(): TaskStats[] {
    return [...this.#tasks.values()].map((task) => task.stats());
  }

  async remove(name: string): Promise<void> {
    await this.#tasks.get(name)?.stop();
    this.#tasks.delete(name);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.#tasks.values()].map((task) => task.stop()));
    this.#tasks.clear();
  }

  #claim(name: string, periodMs: number): void {
    if (this.#tasks.has(name)) throw new Error(`a task named ${name} is scheduled already`);
    if (!(periodMs > 0)) throw new RangeError(`task ${name}: the period must be positive`);
  }
}

class MainThreadRunner {
  readonly #task: PeriodicTask;
  readonly #clock: SchedulerClock;
  readonly #onError: (error: unknown) => void;
  readonly #jitter = new JitterHistogram();
  #origin = 0;
  /** The deadline of the next run is origin + index x period. */
  #index = 1;
  #timer: unknown;
  #stopped = false;
  #runs = 0;
  #overruns = 0;
  #skipped = 0;
  #failures = 0;

  constructor(task: PeriodicTask, clock: SchedulerClock, onError: (error: unknown) => void) {
    this.#task = task;
    this.#clock = clock;
    this.#onError = onError;
  }

  start(): void {
    this.#origin = this.#clock.now();
    this.#arm();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
  }

  stats(): TaskStats {
    return {
      name: this.#task.name,
      thread: 'main',
      runs: this.#runs,
      overruns: this.#overruns,
      skipped: this.#skipped,
      failures: this.#failures,
      ...this.#jitter.summary(),
    };
  }

  #deadline(): number {
    return this.#origin + this.#index * this.#task.periodMs;
  }

  #arm(): void {
    if (this.#stopped) return;
    const delay = Math.max(0, this.#deadline() - this.#clock.now());
    // setTimeout fires at once past its longest delay (24.8 days; tls rotates keys up to 720 h).
    if (delay > MAX_TIMER_DELAY_MS) {
      this.#timer = this.#clock.setTimer(() => this.#arm(), MAX_TIMER_DELAY_MS);
      return;
    }
    this.#timer = this.#clock.setTimer(() => void this.#fire(), delay);
  }

  async #fire(): Promise<void> {
    this.#timer = undefined;
    this.#jitter.recordMs(this.#clock.now() - this.#deadline());
    this.#runs++;
    try {
      await this.#task.run();
    } catch (error) {
      this.#failures++;
      this.#onError(error);
    }
    this.#index++;
    const late = this.#clock.now() - this.#deadline();
    if (late >= 0) {
      // This run (or the time it was given) ate into the next period(s).
      this.#overruns++;
      const missed = Math.floor(late / this.#task.periodMs) + 1;
      const catchUp =
        this.#task.overrun === 'catch-up'
          ? Math.min(missed, this.#task.maxCatchUp ?? DEFAULT_MAX_CATCH_UP)
          : 0;
      // skip: jump to the first deadline still ahead; catch-up: keep the last `catchUp` missed ones.
      this.#skipped += missed - catchUp;
      this.#index += missed - catchUp;
    }
    this.#arm();
  }
}

/** realtime: true is the default priority; a number is checked against chrt's 1-99. */
function realtimePriorityOf(task: WorkerTask): number | undefined {
  if (task.realtime === undefined || task.realtime === false) return undefined;
  if (task.realtime === true) return DEFAULT_REALTIME_PRIORITY;
  if (!Number.isInteger(task.realtime) || task.realtime < 1 || task.realtime > 99)
    throw new RangeError(`task ${task.name}: the realtime priority must be 1 to 99`);
  return task.realtime;
}

class WorkerRunner {
  readonly started: Promise<void>;
  priority: WorkerPriority = { tid: undefined, applied: 'default', refused: [] };
  readonly #task: WorkerTask;
  readonly #worker: Worker;
  readonly #jitter = new JitterHistogram();
  #counters = { runs: 0, overruns: 0, skipped: 0, failures: 0 };

  constructor(
    task: WorkerTask,
    realtimePriority: number | undefined,
    onError: (error: unknown) => void,
    onPriority: (priority: WorkerPriority) => void,
  ) {
    this.#task = task;
    const workerData: PreciseWorkerData = {
      periodMs: task.periodMs,
      overrun: task.overrun,
      maxCatchUp: task.maxCatchUp ?? DEFAULT_MAX_CATCH_UP,
      moduleUrl: task.moduleUrl,
      exportName: task.exportName ?? 'run',
      realtimePriority,
      niceness:
        task.niceness ?? (realtimePriority === undefined ? undefined : REALTIME_FALLBACK_NICENESS),
    };
    this.#worker = new Worker(PRECISE_TASK_WORKER_SOURCE, {
      eval: true,
      workerData,
      name: `task ${task.name}`,
    });
    this.#worker.unref();
    this.started = new Promise((resolve, reject) => {
      this.#worker.on('message', (message: WorkerMessage) => {
        if (message.type === 'started') resolve();
        else if (message.type === 'priority') {
          this.priority = message.priority;
          onPriority(message.priority);
        } else if (message.type === 'error') onError(new Error(message.message));
        else {
          for (const lateness of message.latenessMs) this.#jitter.recordMs(lateness);
          this.#counters = message.counters;
        }
      });
      this.#worker.once('error', (error) => {
        reject(error);
        onError(error);
      });
    });
  }

  stats(): TaskStats {
    return {
      name: this.#task.name,
      thread: 'worker',
      priority: this.priority.applied,
      ...this.#counters,
      ...this.#jitter.summary(),
    };
  }

  async stop(): Promise<void> {
    await this.#worker.terminate();
  }
}

export type WorkerMessage =
  | { type: 'started' }
  | { type: 'priority'; priority: WorkerPriority }
  | { type: 'error'; message: string }
  | {
      type: 'report';
      latenessMs: Float64Array;
      counters: { runs: number; overruns: number; skipped: number; failures: number };
    };

export function describeStats(stats: TaskStats): string {
  const ms = (seconds: number) => `${(seconds * 1000).toFixed(3)} ms`;
  return `${stats.name} (${stats.thread}${stats.priority ? `, ${stats.priority}` : ''}): ${stats.runs} runs, jitter p50 ${ms(stats.p50Seconds)} p99 ${ms(stats.p99Seconds)} max ${ms(stats.maxSeconds)}, ${stats.overruns} overruns, ${stats.skipped} skipped`;
}
