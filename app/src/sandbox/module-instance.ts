import { Worker } from 'node:worker_threads';
import {
  BadCall,
  CpuQuotaExceeded,
  ExportNotFound,
  ModuleBusy,
  ModuleCrashed,
  ModuleFailed,
  ModuleStartFailed,
  ModuleTrap,
  ModuleUnloaded,
  NoRoomForModule,
} from './errors.js';
import type { ModuleLogBudget } from './module-log-budget.js';
import type { ModuleMetrics } from './module-metrics.js';
import type { PreparedModule, SandboxLimits } from './module-package.js';
import type { CallMessage } from './module-worker.js';
import type { CallInput, FromWorker, HostStats, WorkerInit } from './protocol.js';
import { threadCpuMs } from './thread-cpu.js';
import type { UplinkSink } from './uplink-sender.js';
import { ALLOC_EXPORT } from './wasm-abi.js';
import type { WorkerSources } from './worker-source.js';

type LogFn = (object: object, message: string) => void;
export interface SandboxLog {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

export interface InstanceDeps {
  limits: SandboxLimits;
  sources: WorkerSources;
  metrics: ModuleMetrics;
  log: SandboxLog;
  /** Where the module's own lines go: the device's budget of module log lines. */
  moduleLog: ModuleLogBudget;
  uplink: UplinkSink | undefined;
  /** Why one more worker with a wasm memory may not start, or undefined. */
  admit: () => string | undefined;
}

export type InstanceState = 'starting' | 'running' | 'restarting' | 'failed' | 'stopped';

export interface CallResult {
  value: number | string | null;
  /** CPU time of the worker's thread during the call (wall time where /proc cannot tell). */
  cpuMs: number;
}

interface Spawned {
  worker: Worker;
  /** The worker's kernel thread id, when its CPU time can be read; else undefined. */
  tid: number | undefined;
  /** Its CPU time once ready, when `tid` is known. */
  threadCpuMs: number | undefined;
}

interface CurrentCall {
  job: Job;
  id: number;
  timer: NodeJS.Timeout;
  /** performance.now() when the call was posted. */
  postedAt: number;
  /** The worker thread's CPU time then, or undefined: the watchdog counts wall time instead. */
  cpuAtPost: number | undefined;
}

interface Job {
  exportName: string;
  input: CallInput;
  params: CallMessage['params'];
  resolve: (result: CallResult) => void;
  reject: (error: Error) => void;
}

/** Calls waiting for one module beyond this are refused (MODULE_BUSY). */
const MAX_QUEUED_CALLS = 64;
/** Instantiation, WASI set-up and edge_init get this much on top of the per-call quota. */
const START_ALLOWANCE_MS = 5_000;
const MAX_BACKOFF_MS = 30_000;
const NUMERIC = new Set(['i32', 'i64', 'f32', 'f64']);

/** The CPU a call may use: its quota, and a little for messaging and GC in the worker. */
export function cpuBudgetMs(quota: number): number {
  return quota + Math.max(20, quota / 5);
}

/**
 * The wall time after which a call is ended whatever CPU it used: a call that does not finish
 * yet uses no CPU (its thread starved, or blocked in the kernel) would hold the module forever.
 * Ten times the quota lets a call that uses its whole quota finish on a tenth of a core; the
 * second on top covers small quotas, where a stall of the whole device (the update agent
 * writing a slot to the SD card) is longer than the call.
 */
export function wallBackstopMs(quota: number): number {
  return 10 * quota + 1000;
}

/**
 * The server's side of one module: its worker, the calls queued for it (one runs at a time),
 * the watchdog that terminates a worker using more CPU than its quota in a call (or stuck in a
 * call far longer in wall time), and restarts with backoff until the module is marked failed
 * after `maxFailures` failures in a row.
 */
export class ModuleInstance {
  state: InstanceState = 'starting';
  restarts = 0;
  lastFailure: string | undefined;
  memoryBytes = 0;
  readonly startedAt = new Date();
  #worker: Worker | undefined;
  #tid: number | undefined;
  /** The worker thread's CPU time when it last went idle, by its own exact reading. */
  #idleCpuMs: number | undefined;
  #failures = 0;
  #queue: Job[] = [];
  #current: CurrentCall | undefined;
  #nextId = 1;
  #restartTimer: NodeJS.Timeout | undefined;
  #drained: (() => void) | undefined;
  #stopping = false;

  constructor(
    readonly prepared: PreparedModule,
    private readonly deps: InstanceDeps,
  ) {}

  get name(): string {
    return this.prepared.manifest.name;
  }

  get queued(): number {
    return this.#queue.length + (this.#current ? 1 : 0);
  }

  /** The kernel thread id of the running worker (ps -L, /proc/self/task/<tid>), if known. */
  get threadId(): number | undefined {
    return this.#worker ? this.#tid : undefined;
  }

  /** Starts the first worker; throws (MODULE_START_FAILED, MODULE_NO_ROOM) when it does not come up. */
  async start(): Promise<void> {
    try {
      ({
        worker: this.#worker,
        tid: this.#tid,
        threadCpuMs: this.#idleCpuMs,
      } = await this.#spawn());
      this.state = 'running';
    } catch (error) {
      this.state = 'stopped';
      throw error;
    }
  }

  call(exportName: string, input: CallInput): Promise<CallResult> {
    const { name } = this;
    if (this.state === 'failed')
      return Promise.reject(new ModuleFailed(name, this.lastFailure ?? ''));
    if (this.#stopping || this.state === 'stopped') return Promise.reject(new ModuleUnloaded(name));
    const type = this.prepared.functions.get(exportName);
    if (!type) return Promise.reject(new ExportNotFound(name, exportName));
    const refusal = checkInput(type.params, input, this.prepared.functions.has(ALLOC_EXPORT));
    if (refusal) return Promise.reject(new BadCall(`${name}.${exportName}`, refusal));
    if (this.#queue.length >= MAX_QUEUED_CALLS) {
      this.deps.metrics.errors.inc({ module: name, kind: 'busy' });
      return Promise.reject(new ModuleBusy(name));
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ exportName, input, params: type.params, resolve, reject });
      this.#dispatch();
    });
  }

  /** Lets the calls already queued finish, then terminates the worker. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.queued > 0 && this.state !== 'failed') {
      await new Promise<void>((resolve) => (this.#drained = resolve));
    }
    this.state = 'stopped';
    clearTimeout(this.#restartTimer);
    const worker = this.#worker;
    this.#worker = undefined;
    await worker?.terminate();
  }

  #spawn(): Promise<Spawned> {
    const refusal = this.deps.admit();
    if (refusal) return Promise.reject(new NoRoomForModule(refusal));
    const { manifest, module } = this.prepared;
    const { limits } = this.deps;
    const init: WorkerInit = {
      name: manifest.name,
      module,
      wasi: manifest.wasi,
      wasiSource: manifest.wasi ? this.deps.sources.wasi : undefined,
      wasiFsMaxBytes: manifest.quotas.memoryBytes,
      policy: {
        log: manifest.capabilities.log,
        sensors: manifest.capabilities.sensors,
        deviceSensors: limits.sensorAllow,
        sensorRoot: limits.sensorRoot,
        uplinkSchema: manifest.capabilities.uplink?.schema,
        uplinkConfigured: this.deps.uplink !== undefined,
        hostCallsPerSecond: manifest.quotas.hostCallsPerSecond,
        ioBytesPerSecond: manifest.quotas.ioBytesPerSecond,
      },
    };
    const worker = new Worker(this.deps.sources.worker, {
      eval: true,
      workerData: { edgeSandbox: init },
      // The JS heap of the worker (wasm memory is bounded by its declared maximum instead).
      resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 8, stackSizeMb: 4 },
      env: {},
    });
    return new Promise((resolve, reject) => {
      // Only our own listeners are removed: Worker keeps internal ones (removeAllListeners breaks it).
      const onError = (error: Error) => fail(error.message);
      const onExit = (code: number) => fail(`the worker exited with ${code}`);
      const onStartMessage = (message: FromWorker) => {
        if (message.type === 'start-failed' || message.type === 'stopped')
          return fail(message.message);
        if (message.type !== 'ready') return this.#onMessage(worker, message);
        settle();
        worker.on('message', (next: FromWorker) => this.#onMessage(worker, next));
        worker.on('error', (error) => this.#onWorkerGone(worker, error.message));
        worker.on('exit', (code) => this.#onWorkerGone(worker, `the worker exited with ${code}`));
        this.#account(message.memoryBytes, message.stats, 0);
        resolve({ worker, tid: message.tid, threadCpuMs: message.threadCpuMs });
      };
      const settle = () => {
        clearTimeout(timer);
        worker.off('error', onError);
        worker.off('exit', onExit);
        worker.off('message', onStartMessage);
      };
      const fail = (reason: string) => {
        settle();
        void worker.terminate();
        reject(new ModuleStartFailed(manifest.name, reason));
      };
      const startMs = manifest.quotas.cpuMsPerCall + START_ALLOWANCE_MS;
      const timer = setTimeout(() => fail(`not ready within ${startMs} ms`), startMs);
      worker.on('error', onError);
      worker.on('exit', onExit);
      worker.on('message', onStartMessage);
    });
  }

  #dispatch(): void {
    if (this.state !== 'running' || this.#current || !this.#worker) return;
    const job = this.#queue.shift();
    if (!job) {
      if (this.#stopping) this.#drained?.();
      return;
    }
    const id = this.#nextId++;
    const budget = cpuBudgetMs(this.prepared.manifest.quotas.cpuMsPerCall);
    // A thread uses no more CPU than wall time: the budget in wall time is the first check.
    const timer = setTimeout(() => this.#onWatchdog(), budget);
    // Not read here (a /proc read on the main thread per call): the worker sent it when idle.
    const cpuAtPost = this.#tid === undefined ? undefined : this.#idleCpuMs;
    this.#current = { job, id, timer, postedAt: performance.now(), cpuAtPost };
    const message: CallMessage = {
      type: 'call',
      id,
      exportName: job.exportName,
      input: job.input,
      params: job.params,
    };
    this.#worker.postMessage(message);
  }

  #onMessage(worker: Worker, message: FromWorker): void {
    const { name } = this;
    switch (message.type) {
      case 'log':
        this.deps.moduleLog.write(name, message.level, {}, message.text);
        return;
      case 'uplink':
        this.deps.uplink?.send(name, message.payload);
        return;
      case 'stopped':
        this.#onWorkerGone(worker, message.message);
        return;
      case 'result': {
        const current = this.#current;
        if (worker !== this.#worker || !current || current.id !== message.id) return;
        clearTimeout(current.timer);
        this.#current = undefined;
        this.#idleCpuMs = message.threadCpuMs;
        this.#account(message.memoryBytes, message.stats, message.cpuMs);
        const { metrics } = this.deps;
        metrics.calls.inc({ module: name });
        const { outcome } = message;
        if (outcome.ok) {
          this.#failures = 0;
          current.job.resolve({ value: outcome.value, cpuMs: message.cpuMs });
        } else if (outcome.kind === 'trap') {
          metrics.traps.inc({ module: name });
          metrics.errors.inc({ module: name, kind: 'trap' });
          current.job.reject(new ModuleTrap(name, outcome.message));
        } else {
          metrics.errors.inc({ module: name, kind: 'bad_call' });
          current.job.reject(new BadCall(`${name}.${current.job.exportName}`, outcome.message));
        }
        this.#dispatch();
        return;
      }
      default:
        return;
    }
  }

  #account(memoryBytes: number, stats: HostStats, cpuMs: number): void {
    const { metrics } = this.deps;
    const labels = { module: this.name };
    this.memoryBytes = memoryBytes;
    metrics.highWater(this.name, memoryBytes);
    if (cpuMs > 0) metrics.cpuSeconds.inc(labels, cpuMs / 1000);
    if (stats.refusedCalls)
      metrics.quotaRefusals.inc({ ...labels, quota: 'host_calls' }, stats.refusedCalls);
    if (stats.refusedBytes)
      metrics.quotaRefusals.inc({ ...labels, quota: 'io_bytes' }, stats.refusedBytes);
  }

  /**
   * Ends the call when its thread has used its CPU budget, or when it has run past the wall-time
   * backstop; else looks again when the rest of the budget could at the soonest be used up.
   * Without the thread's CPU time (no /proc), the budget is counted in wall time.
   */
  #onWatchdog(): void {
    const current = this.#current;
    if (!current) return;
    const quota = this.prepared.manifest.quotas.cpuMsPerCall;
    const cpuNow = this.#tid === undefined ? undefined : threadCpuMs(this.#tid);
    if (current.cpuAtPost !== undefined && cpuNow !== undefined) {
      const used = cpuNow - current.cpuAtPost;
      const left = cpuBudgetMs(quota) - used;
      if (left > 0) {
        const wallMs = performance.now() - current.postedAt;
        const backstop = wallBackstopMs(quota);
        if (wallMs >= backstop) return this.#onStuck(current, wallMs, used);
        // At least a millisecond: the figure of a running thread moves at each scheduler tick.
        const wait = Math.max(1, Math.min(left, backstop - wallMs));
        current.timer = setTimeout(() => this.#onWatchdog(), wait);
        return;
      }
    }
    this.#current = undefined;
    this.deps.metrics.calls.inc({ module: this.name });
    this.deps.metrics.quotaRefusals.inc({ module: this.name, quota: 'cpu' });
    this.deps.metrics.errors.inc({ module: this.name, kind: 'cpu_quota' });
    this.deps.metrics.cpuSeconds.inc({ module: this.name }, quota / 1000);
    current.job.reject(new CpuQuotaExceeded(this.name, quota));
    this.#fail(`a call of ${current.job.exportName} ran over ${quota} ms`);
  }

  /** A call that does not finish though it does not use its CPU: the worker is ended all the same. */
  #onStuck(current: CurrentCall, wallMs: number, cpuMs: number): void {
    this.#current = undefined;
    const { metrics } = this.deps;
    metrics.calls.inc({ module: this.name });
    metrics.errors.inc({ module: this.name, kind: 'stuck' });
    if (cpuMs > 0) metrics.cpuSeconds.inc({ module: this.name }, cpuMs / 1000);
    const reason =
      `a call of ${current.job.exportName} was stuck for ${Math.round(wallMs)} ms of wall time ` +
      `(${Math.round(cpuMs)} ms of CPU)`;
    current.job.reject(new ModuleCrashed(this.name, reason));
    this.#fail(reason);
  }

  #onWorkerGone(worker: Worker, reason: string): void {
    if (worker !== this.#worker || this.state === 'stopped') return;
    const current = this.#current;
    if (current) {
      clearTimeout(current.timer);
      this.#current = undefined;
      this.deps.metrics.errors.inc({ module: this.name, kind: 'crash' });
      current.job.reject(new ModuleCrashed(this.name, reason));
    }
    this.#fail(reason);
  }

  /** The worker is gone or is terminated here: restart it after a backoff, or give up. */
  #fail(reason: string): void {
    const worker = this.#worker;
    this.#worker = undefined;
    this.#tid = this.#idleCpuMs = undefined;
    // Set first: the exit of the worker terminated here is not a second failure.
    if (worker) void worker.terminate();
    this.#failures++;
    this.lastFailure = reason;
    const { limits, log } = this.deps;
    if (this.#failures >= limits.maxFailures) {
      this.state = 'failed';
      log.error({ module: this.name, failures: this.#failures }, `module marked failed: ${reason}`);
      for (const job of this.#queue.splice(0)) job.reject(new ModuleFailed(this.name, reason));
      this.#drained?.();
      return;
    }
    this.state = 'restarting';
    const delay = Math.min(MAX_BACKOFF_MS, limits.restartBackoffMs * 2 ** (this.#failures - 1));
    log.warn(
      { module: this.name, delayMs: delay, failures: this.#failures },
      `module restarts: ${reason}`,
    );
    this.#restartTimer = setTimeout(() => void this.#restart(), delay);
  }

  async #restart(): Promise<void> {
    if (this.state !== 'restarting') return;
    try {
      const { worker, tid, threadCpuMs: idleCpuMs } = await this.#spawn();
      if (this.state !== 'restarting') {
        await worker.terminate();
        return;
      }
      this.#worker = worker;
      this.#tid = tid;
      this.#idleCpuMs = idleCpuMs;
      this.state = 'running';
      this.restarts++;
      this.deps.metrics.restarts.inc({ module: this.name });
      this.#dispatch();
    } catch (error) {
      this.#fail((error as Error).message);
    }
  }
}

/** Why the input does not fit the export's signature, or undefined. */
function checkInput(
  params: readonly string[],
  input: CallInput,
  hasAlloc: boolean,
): string | undefined {
  if (input.kind === 'bytes') {
    if (!hasAlloc) return `input bytes need an ${ALLOC_EXPORT} export`;
    if (params.length !== 2 || params[0] !== 'i32' || params[1] !== 'i32') {
      return `input bytes go to a function of (ptr: i32, len: i32); this one takes (${params.join(', ')})`;
    }
    return undefined;
  }
  if (input.args.length !== params.length) {
    return `takes ${params.length} argument(s) (${params.join(', ')}), got ${input.args.length}`;
  }
  for (const [index, type] of params.entries()) {
    if (!NUMERIC.has(type)) return `argument ${index} is a ${type}, which a call cannot give`;
    const arg = input.args[index]!;
    if (type === 'i64') {
      if (!/^-?\d{1,20}$/.test(String(arg))) return `argument ${index} must be an integer (i64)`;
    } else if (typeof arg !== 'number') {
      return `argument ${index} must be a number (${type})`;
    } else if (type === 'i32' && !Number.isInteger(arg)) {
      return `argument ${index} must be an integer (i32)`;
    }
  }
  return undefined;
}
