import { performance } from 'node:perf_hooks';
import type { Scheduler } from '../runtime/scheduler.js';
import { ModuleCallShed } from './errors.js';
import type { ScheduleEntry } from './manifest.js';
import type { ModuleInstance, SandboxLog } from './module-instance.js';
import type { CallInput } from './protocol.js';

/** What a scheduled call is given: no arguments (the load refuses exports that take some). */
const NO_INPUT: CallInput = { kind: 'args', args: [] };
/** A task failing for the same reason logs again at most this often... */
const SAME_REASON_LOG_INTERVAL_MS = 60_000;
/** ...and for a new reason at most this often. */
const NEW_REASON_LOG_INTERVAL_MS = 1_000;

export interface ModuleScheduleDeps {
  /** Main-thread tasks only: a module's calls go to its own worker, never at real-time priority. */
  scheduler: Scheduler;
  log: SandboxLog;
  /** Whether module calls are shed now (memory pressure): a run is then not made, and fails. */
  shedding?: (() => boolean) | undefined;
  /** Monotonic milliseconds, for the failure log's intervals. */
  now?: () => number;
}

/** The scheduler task of one scheduled export. */
export function scheduleTaskName(module: string, exportName: string): string {
  return `module ${module} ${exportName}`;
}

/**
 * The scheduler tasks of the loaded modules, one per entry of a manifest's `schedule`, each
 * bound to the instance it was added for. A run calls the export as the call route does (same
 * instance, queue and quotas) and awaits it, so runs of one task never overlap: a run still
 * going at the next deadline is an overrun, which the entry's policy settles. A failed run is
 * counted by the scheduler (edge_task_runs{outcome="failed"}) and the schedule goes on.
 */
export class ModuleSchedules {
  readonly #tasks = new Map<string, string[]>();
  readonly #now: () => number;

  constructor(private readonly deps: ModuleScheduleDeps) {
    this.#now = deps.now ?? (() => performance.now());
  }

  /** Adds the tasks of `instance`'s manifest; the module's previous ones must be removed first. */
  add(instance: ModuleInstance): void {
    const { name } = instance;
    if (this.#tasks.has(name)) throw new Error(`module ${name} is scheduled already`);
    const added: string[] = [];
    try {
      for (const entry of instance.prepared.manifest.schedule ?? []) {
        added.push(this.#addTask(instance, entry));
      }
    } catch (error) {
      for (const task of added) void this.deps.scheduler.remove(task);
      throw error;
    }
    if (added.length > 0) this.#tasks.set(name, added);
  }

  /** Removes a module's tasks (a run in flight finishes on its instance; no run starts after). */
  async remove(module: string): Promise<void> {
    const tasks = this.#tasks.get(module) ?? [];
    this.#tasks.delete(module);
    await Promise.all(tasks.map((task) => this.deps.scheduler.remove(task)));
  }

  async removeAll(): Promise<void> {
    await Promise.all([...this.#tasks.keys()].map((module) => this.remove(module)));
  }

  #addTask(instance: ModuleInstance, entry: ScheduleEntry): string {
    const task = scheduleTaskName(instance.name, entry.export);
    const failures = new FailureLog(this.deps.log, this.#now, {
      module: instance.name,
      export: entry.export,
      task,
    });
    this.deps.scheduler.add({
      name: task,
      periodMs: entry.everyMs,
      overrun: entry.overrun,
      run: async () => {
        if (this.deps.shedding?.()) throw new ModuleCallShed(instance.name);
        await instance.call(entry.export, NO_INPUT);
        failures.succeeded();
      },
      onError: (error) => failures.failed(error),
    });
    return task;
  }
}

/**
 * One task's failures in the log without flooding it: the first failure, then one line when the
 * reason changes (at most once a second) or once a minute for the same reason, each saying how
 * many failures it stands for; and one line when a run succeeds after a logged failure.
 */
class FailureLog {
  #lastReason: string | undefined;
  #lastLineAt = -Infinity;
  #failuresSinceLine = 0;
  #reportedFailing = false;

  constructor(
    private readonly log: SandboxLog,
    private readonly now: () => number,
    private readonly fields: { module: string; export: string; task: string },
  ) {}

  failed(error: unknown): void {
    this.#failuresSinceLine++;
    const reason = (error as { code?: unknown }).code;
    const code = typeof reason === 'string' ? reason : ((error as Error).name ?? 'Error');
    const since = this.now() - this.#lastLineAt;
    const interval =
      code === this.#lastReason ? SAME_REASON_LOG_INTERVAL_MS : NEW_REASON_LOG_INTERVAL_MS;
    if (since < interval) return;
    this.log.warn(
      { ...this.fields, code, failures: this.#failuresSinceLine },
      `scheduled call of ${this.fields.export} failed: ${(error as Error).message ?? String(error)}`,
    );
    this.#lastReason = code;
    this.#lastLineAt = this.now();
    this.#failuresSinceLine = 0;
    this.#reportedFailing = true;
  }

  succeeded(): void {
    if (!this.#reportedFailing) return;
    this.#reportedFailing = false;
    this.log.info(this.fields, `scheduled call of ${this.fields.export} succeeds again`);
  }
}
